"""Reports of a TestScript run: plain text for a terminal, JUnit XML for CI, HTML for people."""

from __future__ import annotations

import html
from pathlib import Path
from xml.etree import ElementTree as ET

from .model import ScriptResult, TestResult


def _phases(r: ScriptResult) -> list[TestResult]:
    return [p for p in (r.setup, *r.tests, r.teardown) if p is not None]


def text(results: list[ScriptResult], verbose: bool = False) -> str:
    lines = []
    for r in results:
        passed, failed = r.counts()
        lines.append(f"{'PASS' if r.passed else 'FAIL'}  {r.name}  ({passed} passed, {failed} failed, {r.seconds:.2f}s)")
        if r.error:
            lines.append(f"      error: {r.error}")
        for phase in _phases(r):
            if phase.name == "teardown" and phase.passed and not verbose:
                continue
            if phase.name == "setup" and phase.passed and not verbose:
                continue
            mark = "ok  " if phase.passed else ("skip" if phase.skipped else "FAIL")
            lines.append(f"  {mark} {phase.name}")
            for a in phase.actions:
                if verbose or (not a.passed and not a.skipped):
                    state = "ok" if a.passed else ("warn" if a.warning_only else "FAILED")
                    lines.append(f"       {state}: {a.kind} {a.label}" + (f"\n         why: {a.message}" if a.message else ""))
    total_p = sum(r.counts()[0] for r in results)
    total_f = sum(r.counts()[1] for r in results)
    lines.append(f"{total_p} passed, {total_f} failed")
    return "\n".join(lines)


def junit(results: list[ScriptResult], path: Path) -> None:
    root = ET.Element("testsuites", name="FHIR TestScripts")
    for r in results:
        phases = [p for p in (r.setup, *r.tests) if p is not None]
        failures = sum(1 for p in phases if not p.passed and not p.skipped)
        skipped = sum(1 for p in phases if p.skipped)
        suite = ET.SubElement(root, "testsuite", name=r.name, tests=str(len(phases) or 1), failures=str(failures),
                              errors="1" if r.error else "0", skipped=str(skipped), time=f"{r.seconds:.3f}",
                              file=r.source)
        if r.error:
            case = ET.SubElement(suite, "testcase", name="load", classname=r.name)
            ET.SubElement(case, "error", message=r.error).text = r.error
        for p in phases:
            case = ET.SubElement(suite, "testcase", name=p.name, classname=r.name, time=f"{p.seconds:.3f}")
            if p.skipped:
                ET.SubElement(case, "skipped", message="the setup failed")
            elif not p.passed:
                msgs = [f"{a.label}: {a.message}" for a in p.failures]
                ET.SubElement(case, "failure", message=msgs[0][:500] if msgs else "failed").text = "\n".join(msgs)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def html_report(results: list[ScriptResult], path: Path) -> None:
    esc = html.escape
    total_p = sum(r.counts()[0] for r in results)
    total_f = sum(r.counts()[1] for r in results)
    rows = []
    for r in results:
        rows.append(f"<h2 class='{'pass' if r.passed else 'fail'}'>{esc(r.name)}</h2>"
                    f"<p class='src'>{esc(r.source)} · {r.seconds:.2f}s</p>")
        if r.error:
            rows.append(f"<p class='fail'>Could not run: {esc(r.error)}</p>")
        rows.append("<table><tr><th>phase</th><th>action</th><th>result</th><th>why</th></tr>")
        for phase in _phases(r):
            for a in phase.actions:
                state = "pass" if a.passed else ("warn" if a.warning_only else "skip" if a.skipped else "fail")
                rows.append(f"<tr class='{state}'><td>{esc(phase.name)}</td><td>{esc(a.kind)}: {esc(a.label)}</td>"
                            f"<td>{state}</td><td>{esc(a.message)}</td></tr>")
        rows.append("</table>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>FHIR TestScript results</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; width: 100%; margin-bottom: 1.5rem; font-size: 0.9rem; }}
td, th {{ border: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }}
tr.pass td:nth-child(3) {{ color: #17692b; }} tr.fail {{ background: #fde8e8; }} tr.warn {{ background: #fff6d6; }}
h2.pass::before {{ content: "✔ "; color: #17692b; }} h2.fail::before {{ content: "✘ "; color: #b00020; }}
.src {{ color: #666; font-size: 0.85rem; }}
</style></head><body>
<h1>FHIR TestScript results</h1>
<p><strong>{total_p} passed, {total_f} failed</strong> across {len(results)} scripts.</p>
{''.join(rows)}
</body></html>
"""
    path.write_text(page, encoding="utf-8")
