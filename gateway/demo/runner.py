"""`gateway demo`: make the synthetic partners' files, load them through the real adapters, report.

HL7 v2 messages go through the same pipeline as MLLP and `POST /hl7v2` (inbox, ACK, Provenance);
council and community files through `gateway.pipeline.ingest.ingest`, as `gateway ingest` and
`POST /ingest/...` do. Nothing is written to the store any other way. Loading again changes
nothing: a re-sent message (same MSH-10 from the same sender) gets its recorded ACK, and a
re-loaded row is a conditional update that finds nothing to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gateway.demo.files import write_dataset
from gateway.demo.people import make_people, showcase
from gateway.fhir.request import FhirRequest

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


@dataclass
class DemoReport:
    people: int = 0
    messages: int = 0
    acks: dict[str, int] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)
    ingest: list = field(default_factory=list)  # IngestReport per CSV file
    showcase_id: str | None = None
    showcase_sources: list[str] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)

    @property
    def rejected_rows(self) -> int:
        return sum(len(r.rejected) for r in self.ingest)

    @property
    def failed_messages(self) -> int:
        return sum(n for code, n in self.acks.items() if code != "AA")


def _ack_code(ack: bytes) -> str:
    for seg in ack.decode("utf-8", "replace").replace("\n", "\r").split("\r"):
        if seg.startswith("MSA|"):
            return seg.split("|")[1]
    return "??"


async def run(ctx, folder: Path, people: int, seed: int, echo: Callable[[str], None] = print) -> DemoReport:
    """Generate, write and load the demo data set; the context's store must be open."""
    from gateway.pipeline.hl7v2 import Hl7v2Pipeline
    from gateway.pipeline.ingest import ingest

    report = DemoReport(people=people)
    cast = make_people(people, seed)
    report.files = write_dataset(cast, folder, ctx.settings.effective_mappings_dir)
    echo(f"wrote {len(report.files['hl7v2'])} ADT messages, a council CLD extract and a community CSDS extract "
         f"for {people} people to {folder}")
    pipeline = ctx.services.get("hl7v2") or Hl7v2Pipeline(ctx)
    for path in report.files["hl7v2"]:
        code = _ack_code(await pipeline.receive(path.read_bytes(), "demo"))
        report.acks[code] = report.acks.get(code, 0) + 1
        report.messages += 1
    echo(f"hospital: {report.messages} messages, ACK " + ", ".join(f"{k} {v}" for k, v in sorted(report.acks.items())))
    for kind in ("council", "community"):
        for path in report.files[kind]:
            result = await ingest(ctx, kind, path, f"demo/{kind}/{path.name}")
            report.ingest.append(result)
            echo(f"{kind}: {result.summary()}")
            for line, reasons in result.rejected[:10]:
                echo(f"  rejected line {line}: {'; '.join(reasons)}")
    star = showcase(cast)
    if star is not None:
        report.showcase_id = await patient_id(ctx, star.nhs)
        if report.showcase_id:
            report.showcase_sources = await sources_of(ctx, report.showcase_id)
    bundle = await _get(ctx, "Patient", [("_tag", "https://fhir.activerecovery.example/CodeSystem/identity-review|possible-duplicate"),
                                         ("_count", "200"), ("_elements", "id")])
    report.duplicate_ids = [e["resource"]["id"] for e in bundle.get("entry", [])]
    return report


async def _get(ctx, path: str, params: list[tuple[str, str]] | None = None) -> dict:
    resp = await ctx.router.dispatch(FhirRequest("GET", path, params or [], base_url=""))
    return resp.as_dict() or {}


async def patient_id(ctx, nhs: str) -> str | None:
    bundle = await _get(ctx, "Patient", [("identifier", f"{NHS_NUMBER_SYSTEM}|{nhs}")])
    entries = bundle.get("entry") or []
    return entries[0]["resource"]["id"] if entries else None


async def sources_of(ctx, pid: str) -> list[str]:
    """The partners whose data is in the person's `$everything`, as the history page reads them."""
    from gateway.web.sources import ORDER, SourceIndex

    bundle = await _get(ctx, f"Patient/{pid}/$everything")
    index = SourceIndex.for_settings(ctx.settings)
    resources = [e["resource"] for e in bundle.get("entry", [])]
    for res in resources:
        if res.get("resourceType") == "Provenance":
            index.add_provenance(res)
    found = {s for res in resources if res.get("resourceType") != "Provenance" for s in index.of_resource(res)}
    return [s for s in ORDER if s in found]
