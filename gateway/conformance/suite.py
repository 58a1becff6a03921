"""The suites in `conformance/suites/<name>/` and running them (used by `gateway conformance run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .testscript import ScriptError, ScriptResult, TestScriptRunner, load_scripts
from .testscript import report

SUITES = Path(__file__).resolve().parents[2] / "conformance" / "suites"


def suite_paths(names: list[str]) -> list[Path]:
    """Suite names (folders of conformance/suites/) or paths; no names = every suite."""
    if not names:
        return sorted(p for p in SUITES.iterdir() if p.is_dir()) if SUITES.is_dir() else []
    out = []
    for name in names:
        path = SUITES / name  # a suite name wins over a same-named folder in the working directory
        if not path.exists():
            path = Path(name)
        if not path.exists():
            known = ", ".join(p.name for p in SUITES.iterdir() if p.is_dir()) if SUITES.is_dir() else "none"
            raise ScriptError(f"no suite {name!r} (known: {known})")
        out.append(path)
    return out


def run_paths(base: str, paths: list[Path], variables: dict[str, str] | None = None,
              runner: TestScriptRunner | None = None) -> list[ScriptResult]:
    runner = runner or TestScriptRunner(base, variables=variables)
    results = []
    for path in paths:
        scripts = load_scripts(path)
        if not scripts:
            raise ScriptError(f"no TestScripts in {path}")
        for origin, script in scripts:
            results.append(runner.run(script, origin))
    return results


def run_suites(base: str, names: list[str], *, junit: str | None = None, html: str | None = None,
               variables: dict[str, str] | None = None, verbose: bool = False,
               echo: Callable[[str], None] = print) -> bool:
    try:
        results = run_paths(base, suite_paths(names), variables)
    except ScriptError as exc:
        echo(f"error: {exc}")
        return False
    echo(report.text(results, verbose))
    if junit:
        report.junit(results, Path(junit))
    if html:
        report.html_report(results, Path(html))
    return bool(results) and all(r.passed for r in results)
