"""Council and community files in: read → map (adapters) → match the person → store, row by row.

Each row is all-or-nothing (a savepoint inside a session of many rows, so one fsync covers many
rows); a bad row is rejected whole with its line number and reasons, good rows still load.
Re-loading the same file changes nothing: every entry is a conditional update by a source-scoped
identifier, the store skips writes that change nothing, and a row that changed nothing gets no
new Provenance.

Two ways through the store give the same result: the bulk path (the default, `gateway.pipeline.bulk`:
a chunk's identifier look-ups answered together, entries written straight through the session)
and the transaction path (`bulk=False`: each row a FHIR transaction Bundle through the route
table), kept as the reference the bulk path is tested against.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Callable

from gateway.fhir.bundles import rewrite_references
from gateway.fhir.outcome import FhirError
from gateway.pipeline.bulk import ChunkIndex, chunk_keys, write_entries
from gateway.pipeline.matching import resolve_patient
from gateway.pipeline.provenance import provenance_for
from gateway.pipeline.writes import apply_transaction, write_one

PATIENT_REF = "urn:gateway:patient"
FILE_SYSTEM = "https://fhir.activerecovery.example/Id/ingest-file"
ROWS_PER_SESSION = 200
# Rows per store session on the bulk path: one commit (fsync) and one batch of identifier
# searches per chunk. SQLite has one writer, so a chunk is also how long an HTTP write may wait
# behind a file load: 500 rows is well under a second at the measured rate, and the fsync and
# the chunk's searches are already a small share of the time at this size.
ROWS_PER_BULK_SESSION = 500
KINDS = {"council": ("council-cld.json", "council"), "community": ("community-csds.json", "community")}


@dataclass
class IngestReport:
    kind: str
    source: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_unchanged: int = 0
    created: int = 0
    updated: int = 0
    rejected: list[tuple[int, list[str]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)
    possible_duplicates: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.source}: {self.rows_read} rows read, {self.rows_loaded} loaded "
                f"({self.rows_unchanged} unchanged), {len(self.rejected)} rejected; "
                f"{self.created} resources created, {self.updated} updated"
                + (f"; {len(self.possible_duplicates)} possible duplicates for review" if self.possible_duplicates else ""))

    def outcome(self) -> dict:
        """The report as a FHIR OperationOutcome (what POST /ingest/... answers)."""
        issues = [{"severity": "information", "code": "informational", "diagnostics": self.summary()}]
        issues += [{"severity": "error", "code": "structure", "diagnostics": e} for e in self.file_errors]
        issues += [{"severity": "warning", "code": "informational", "diagnostics": w} for w in self.warnings]
        issues += [{"severity": "error", "code": "invalid", "diagnostics": f"line {line}: {'; '.join(reasons)}",
                    "location": [f"line {line}"]} for line, reasons in self.rejected]
        issues += [{"severity": "warning", "code": "duplicate", "diagnostics": f"possible duplicate patient {p} listed for review"}
                   for p in self.possible_duplicates]
        return {"resourceType": "OperationOutcome", "issue": issues}

    def write_rejects(self, path: Path) -> None:
        write_rejects(path, [self])


def write_rejects(path: Path, reports: list[IngestReport]) -> None:
    """One CSV of every rejected row of every file, with its line number and reasons."""
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["source", "line", "reasons"])
        for report in reports:
            for line, reasons in report.rejected:
                w.writerow([report.source, line, "; ".join(reasons)])


def reader_for(kind: str):
    if kind == "council":
        from gateway.adapters.council.cld import read_council_file

        return read_council_file
    if kind == "community":
        from gateway.adapters.community.csds import read_community_file

        return read_community_file
    raise ValueError(f"unknown source kind {kind!r}: council or community")


async def ingest(ctx, kind: str, data: bytes | IO[bytes] | Path, source: str, spec: Path | None = None,
                 progress: Callable[[int], None] | None = None, bulk: bool = True) -> IngestReport:
    report = IngestReport(kind, source)
    spec = spec or ctx.settings.effective_mappings_dir / KINDS[kind][0]
    raw = data.read_bytes() if isinstance(data, Path) else (data if isinstance(data, bytes) else data.read())
    digest = hashlib.sha256(raw).hexdigest()[:16]
    messages, rows = reader_for(kind)(io.BytesIO(raw), spec)
    report.file_errors = [m for m in messages if m.startswith("error")]
    report.warnings = [m for m in messages if not m.startswith("error")]
    if report.file_errors:
        return report
    file_ref = f"{source}#{digest}"
    if bulk:
        while chunk := list(islice(rows, ROWS_PER_BULK_SESSION)):  # mapped before the write lock is taken
            async with ctx.store.session(write=True, alone=True) as s:
                index = ChunkIndex(ctx, s)
                # SQLite has one writer already; on PostgreSQL the conditional interactions' advisory
                # locks are taken up front, sorted so that two loaders cannot deadlock each other
                shared = s.dialect.name != "sqlite"
                keys, locks = chunk_keys(chunk, index, want_locks=shared)
                for key in locks:
                    await s.lock(key)
                await index.resolve(keys)
                for row in chunk:
                    await _one_row(ctx, s, kind, row, report, file_ref, index)
                    if progress:
                        progress(1)
        return report
    done = False
    while not done:
        done = True
        async with ctx.store.session(write=True, alone=True) as s:
            for n, row in enumerate(rows):
                await _one_row(ctx, s, kind, row, report, file_ref)
                if progress:
                    progress(1)
                if n + 1 >= ROWS_PER_SESSION:
                    done = False
                    break
    return report


async def _one_row(ctx, s, kind: str, row, report: IngestReport, file_ref: str, index: ChunkIndex | None = None) -> None:
    """One row in its own savepoint; `index` set: the bulk path, else the transaction path."""
    report.rows_read += 1
    report.warnings += [f"line {row.line}: {w}" for w in row.warnings]
    if row.errors:
        report.rejected.append((row.line, list(row.errors)))
        return
    if not row.entries:
        report.rows_unchanged += 1
        report.rows_loaded += 1
        return
    mark = len(s.changes)
    try:
        async with s.savepoint():
            written: list[str] = []
            refs = {}
            if row.patient is not None:
                match = await resolve_patient(ctx, s, row.patient, index)
                written += match.written
                refs[PATIENT_REF] = match.reference
                if match.candidates:
                    report.possible_duplicates.append(match.reference)
            if index is not None:
                written += await write_entries(ctx, s, index, row.entries, refs)
            else:
                written += await apply_transaction(ctx, s, [rewrite_references(e, refs) for e in row.entries])
            if written:
                org = _source_org(row)
                prov = provenance_for(written, 0, f"{kind} file {file_ref} line {row.line}", None, org or kind,
                                      activity="UPDATE")
                prov["entity"][0]["what"] = {"identifier": {"system": FILE_SYSTEM, "value": f"{file_ref}:{row.line}"},
                                             "display": f"{kind} file {file_ref.split('#')[0]}, line {row.line}"}
                await write_one(ctx, s, prov)
    except FhirError as exc:
        report.rejected.append((row.line, [i.diagnostics for i in exc.issues]))
        return
    if index is not None:
        index.written(s.changes[mark:])  # only now: a rolled-back row must leave no trace in it
    new = [c for c in s.changes[mark:] if c.type != "Provenance"]
    report.created += sum(1 for c in new if c.version == 1)
    report.updated += sum(1 for c in new if c.version > 1)
    report.rows_loaded += 1
    if not new:
        report.rows_unchanged += 1


def _source_org(row) -> str | None:
    for e in row.entries:
        res = e.get("resource", {})
        for key in ("managingOrganization", "performer", "requester"):
            ref = res.get(key)
            ref = ref[0] if isinstance(ref, list) and ref else ref
            if isinstance(ref, dict) and ref.get("display"):
                return ref["display"]
    return None
