"""Parse speed: gateway ER7 parser vs python-hl7 `hl7.parse`, on the test fixtures.

    python bench/bench_er7.py [--repeat 5]

Prints microseconds per message for parse alone and for parse plus ~30 typical field reads,
for the 16-segment ADT^A03 and as a mean over all parseable fixtures, and the speed-up.
"""

from __future__ import annotations

import argparse
import platform
import sys
import timeit
from pathlib import Path

import hl7

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.adapters.hl7v2.er7 import parse_message  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "hl7v2"
HEADLINE = "adt_a03_v24.hl7"  # the 16-segment discharge
# What an ADT mapper typically reads: (segment, field, repetition, component)
FIELDS = [
    ("MSH", 3, 0, 1), ("MSH", 4, 0, 1), ("MSH", 7, 0, 1), ("MSH", 9, 0, 1), ("MSH", 9, 0, 2), ("MSH", 10, 0, 1),
    ("MSH", 12, 0, 1), ("EVN", 2, 0, 1), ("EVN", 6, 0, 1),
    ("PID", 3, 0, 1), ("PID", 3, 0, 5), ("PID", 3, 1, 1), ("PID", 3, 1, 5),
    ("PID", 5, 0, 1), ("PID", 5, 0, 2), ("PID", 5, 0, 5), ("PID", 7, 0, 1), ("PID", 8, 0, 1),
    ("PID", 11, 0, 1), ("PID", 11, 0, 5), ("PID", 32, 0, 1),
    ("PD1", 3, 0, 3), ("PD1", 4, 0, 1),
    ("PV1", 2, 0, 1), ("PV1", 3, 0, 1), ("PV1", 3, 0, 4), ("PV1", 7, 0, 1), ("PV1", 19, 0, 1),
    ("PV1", 36, 0, 1), ("PV1", 37, 0, 1), ("PV1", 44, 0, 1), ("PV1", 45, 0, 1),
    ("ZU1", 22, 0, 1), ("ZU1", 24, 0, 1),
]


def ours(data: bytes) -> None:
    parse_message(data)


def ours_with_fields(data: bytes) -> None:
    msg = parse_message(data)
    for name, field, rep, comp in FIELDS:
        seg = msg.segment(name)
        if seg is not None:
            seg.get(field, rep, comp)


def theirs(text: str) -> None:
    hl7.parse(text)


def theirs_with_fields(text: str) -> None:
    msg = hl7.parse(text)
    for name, field, rep, comp in FIELDS:
        try:
            msg.segment(name).extract_field(field_num=field, repeat_num=rep + 1, component_num=comp)
        except (KeyError, IndexError):
            pass


def per_call_us(func, arg, repeat: int) -> float:
    timer = timeit.Timer(lambda: func(arg))
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def python_hl7_input(data: bytes) -> str:
    """python-hl7 needs decoded CR-only text; do that outside its timing (it is our work too)."""
    return parse_message(data).text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    paths = [p for p in sorted(FIXTURES.glob("*.hl7")) if not p.name.startswith(("malformed_", "batch_"))]
    rows = []
    for path in paths:
        data = path.read_bytes()
        text = python_hl7_input(data)
        rows.append((
            path.name,
            len(parse_message(data).segments),
            per_call_us(ours, data, args.repeat),
            per_call_us(ours_with_fields, data, args.repeat),
            per_call_us(theirs, text, args.repeat),
            per_call_us(theirs_with_fields, text, args.repeat),
        ))
    print(f"Python {platform.python_version()} on {platform.machine()}; python-hl7 {hl7.__version__}; "
          f"{len(FIELDS)} field reads; best of {args.repeat}")
    header = f"{'fixture':36} {'segs':>4} {'er7 parse':>10} {'er7+fields':>11} {'hl7.parse':>10} {'hl7+fields':>11} {'ratio':>6} {'ratio+f':>7}"
    print(header)
    print("-" * len(header))

    def line(name: str, segs: object, a: float, b: float, c: float, d: float) -> str:
        return f"{name:36} {segs!s:>4} {a:10.1f} {b:11.1f} {c:10.1f} {d:11.1f} {c / a:5.0f}x {d / b:6.0f}x"

    for row in rows:
        print(line(*row))
    print("-" * len(header))
    head = next(r for r in rows if r[0] == HEADLINE)
    means = [sum(r[i] for r in rows) / len(rows) for i in range(2, 6)]
    print(line(f"HEADLINE {HEADLINE}", head[1], *head[2:]))
    print(line(f"MEAN of {len(rows)} fixtures", "", *means))
    print("(times in microseconds per message; ratio = python-hl7 time / er7 time)")


if __name__ == "__main__":
    main()
