"""A FHIR R4 TestScript runner that works against any server (plain httpx, no gateway internals)."""

from .model import ActionResult, ScriptResult, TestResult
from .runner import ScriptError, TestScriptRunner, load_scripts

__all__ = ["ActionResult", "ScriptError", "ScriptResult", "TestResult", "TestScriptRunner", "load_scripts"]
