"""Reading a delimited file against a column spec, one row at a time.

The header is read and checked first (unknown columns are a warning, missing required columns
an error for the whole file); then rows stream out as `ParsedRow`s. A row with any problem is
rejected whole, with its 1-based line number (the header is line 1) and every reason at once, so
the sender can fix them in one go. A row that repeats an earlier row of the same file exactly is
marked as a duplicate (loaded once); one that reuses an event's key with different values is
rejected, because nobody can tell which of the two is right.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from .spec import Column, ColumnSpec
from .values import BadValue, parse_cell

Source = str | os.PathLike | IO[str] | IO[bytes]
ERROR = "error: "
WARNING = "warning: "


@dataclass
class ParsedRow:
    line: int
    kind: str | None = None  # the spec's row kind (CLD: request, assessment, service, review)
    key: str | None = None  # the event's key within its kind: stable across deliveries
    values: dict[str, Any] = field(default_factory=dict)  # target -> typed value (None if empty)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    duplicate_of: int | None = None  # line of an identical earlier row

    def get(self, target: str, default: Any = None) -> Any:
        value = self.values.get(target)
        return default if value is None else value


def file_errors(messages: list[str]) -> list[str]:
    """The file-level messages that stop the file being read."""
    return [m for m in messages if m.startswith(ERROR)]


def read_table(source: Source, spec: ColumnSpec) -> tuple[list[str], Iterator[ParsedRow]]:
    """File-level messages (each starting `error: ` or `warning: `) and the rows. When there is
    an error the iterator is empty. Reading is lazy: rows are parsed as the caller iterates."""
    stream, close = _open(source, spec.encoding)
    reader = csv.reader(stream, delimiter=spec.delimiter)
    try:
        header = next(reader)
    except StopIteration:
        close()
        return [f"{ERROR}the file is empty: no header row"], iter(())
    except (csv.Error, UnicodeDecodeError) as exc:
        close()
        return [f"{ERROR}cannot read the header row ({_describe(exc, spec)})"], iter(())
    if header:
        header[0] = header[0].lstrip("\ufeff")  # a BOM left by a text stream opened without utf-8-sig
    messages, layout = _check_header(header, spec)
    if file_errors(messages):
        close()
        return messages, iter(())
    return messages, _rows(reader, reader.line_num, len(header), layout, spec, close)


# --------------------------------------------------------------------------- header


def _check_header(header: list[str], spec: ColumnSpec) -> tuple[list[str], list[Column | None]]:
    by_name = {col.name.casefold(): col for col in spec.columns}
    layout: list[Column | None] = []
    seen: dict[str, int] = {}
    unknown, duplicated = [], []
    for i, name in enumerate(header):
        folded = name.strip().casefold()
        if folded and folded in seen:
            duplicated.append(name.strip())
        seen.setdefault(folded, i)
        col = by_name.get(folded)
        if col is None and folded:
            unknown.append(name.strip())
        layout.append(col if col is not None and seen[folded] == i else None)
    messages = []
    missing = [col.name for col in spec.columns if col.required and col.name.casefold() not in seen]
    if missing:
        messages.append(f"{ERROR}required columns missing from the header: {', '.join(missing)}")
    if duplicated:
        messages.append(f"{ERROR}columns named twice in the header: {', '.join(duplicated)}")
    if unknown:
        messages.append(f"{WARNING}columns not in spec {spec.id} were ignored: {', '.join(unknown)}")
    return messages, layout


# --------------------------------------------------------------------------- rows


def _rows(reader, end: int, width: int, layout: list[Column | None], spec: ColumnSpec,
          close: Callable[[], None]) -> Iterator[ParsedRow]:
    """`end` is the last physical line of the previous record (quoted values may span lines)."""
    seen: dict[tuple[str | None, str], tuple[int, str]] = {}
    try:
        while True:
            start = end + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                reason = f"line {start}: {_describe(exc, spec)}; the rest of the file was not read"
                yield ParsedRow(start, errors=[reason])
                return
            end = reader.line_num
            if not any(c.strip() for c in cells):
                continue  # blank line, or a spreadsheet's trailing ",,,,"
            row = ParsedRow(start)
            if len(cells) != width:
                row.errors.append(f"row has {len(cells)} values but the header has {width} "
                                  f"(a cut-off line or an unquoted delimiter)")
                yield row
                continue
            _parse(row, cells, layout, spec)
            if not row.errors:
                _check_duplicate(row, [c for c, col in zip(cells, layout) if col is not None], seen)
            yield row
    finally:
        close()


def _parse(row: ParsedRow, cells: list[str], layout: list[Column | None], spec: ColumnSpec) -> None:
    for col in spec.columns:
        row.values[col.target] = None
    for col, cell in zip(layout, cells):
        if col is None:
            continue
        text = cell.strip()
        if not text or text.casefold() in spec.null_values:
            continue
        try:
            row.values[col.target] = parse_cell(spec, col, text)
        except BadValue as exc:
            message = f"{col.name}: {exc}"
            if col.on_invalid == "warn":
                row.warnings.append(f"{message}; value left out")
            else:
                row.errors.append(message)

    if spec.row_kind is not None:
        kind_col = spec.by_target[spec.row_kind.target]
        raw_kind = row.values.get(spec.row_kind.target)
        row.kind = spec.row_kind.classify(raw_kind)
        if row.kind is None and raw_kind is not None:
            row.errors.append(f"{kind_col.name}: {raw_kind!r} is not one of {', '.join(spec.row_kind.labels)}")
    else:
        row.kind = "row"

    for col in spec.columns:
        if row.values.get(col.target) is not None or _failed(row, col):
            continue
        if col.required or (row.kind in col.required_for):
            why = "" if col.required else f" for a {row.kind} row"
            row.errors.append(f"{col.name}: required value missing{why}")

    if row.kind is not None and not row.errors:
        row.key = _event_key(row, spec)


def _failed(row: ParsedRow, col: Column) -> bool:
    """True when the column already has an error of its own (one reason per column is enough)."""
    return any(e.startswith(f"{col.name}: ") for e in row.errors)


def _event_key(row: ParsedRow, spec: ColumnSpec) -> str | None:
    for fields in (spec.event_key.get(row.kind or ""), spec.event_key_fallback.get(row.kind or "")):
        if fields and all(row.values.get(f) is not None for f in fields):
            return ".".join(_key_part(row.values[f]) for f in fields)
    names = [spec.by_target[f].name for f in spec.event_key.get(row.kind or "", ())]
    fallback = [spec.by_target[f].name for f in spec.event_key_fallback.get(row.kind or "", ())]
    hint = f" (or all of {', '.join(fallback)})" if fallback else ""
    row.errors.append(f"{', '.join(names)}: required to identify the {row.kind} event{hint}")
    return None


def _key_part(value: Any) -> str:
    code = getattr(value, "code", None)
    return str(code if code is not None else value)


def _check_duplicate(row: ParsedRow, cells: list[str], seen: dict) -> None:
    """`cells`: the row's values in the spec's columns (ignored columns do not make a row differ)."""
    if row.key is None:
        return
    fingerprint = hashlib.sha256("\x1f".join(c.strip() for c in cells).encode()).hexdigest()
    earlier = seen.get((row.kind, row.key))
    if earlier is None:
        seen[(row.kind, row.key)] = (row.line, fingerprint)
    elif earlier[1] == fingerprint:
        row.duplicate_of = earlier[0]
        row.warnings.append(f"duplicate of line {earlier[0]}: identical row, loaded once")
    else:
        row.errors.append(f"the same {row.kind} event ({row.key}) is on line {earlier[0]} with different "
                          f"values; which one is right cannot be told")


# --------------------------------------------------------------------------- opening


def _open(source: Source, encoding: str) -> tuple[IO[str], Callable[[], None]]:
    if isinstance(source, (str, os.PathLike)):
        stream = open(Path(source), encoding=encoding, newline="")
        return stream, stream.close
    if isinstance(source, io.TextIOBase):
        return source, lambda: None
    wrapper = io.TextIOWrapper(source, encoding=encoding, newline="")  # type: ignore[arg-type]
    return wrapper, wrapper.detach


def _describe(exc: Exception, spec: ColumnSpec) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not valid {spec.encoding} text: is the spec's encoding right for this file?"
    return f"not readable as delimited text ({exc})"
