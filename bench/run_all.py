"""Run every benchmark in bench/ and print one table: measure, ours, reference, ratio, goal.

Each benchmark prints a table: a header row ``measure | ours | reference | ratio | goal``
followed by rows of five ``|``-separated cells; this collects the rows under the name of the
benchmark. A benchmark that exits with an error, or prints no table, is reported by name (in
the table and at the end) and the run goes on; the exit code is then 1.

Usage::

    .venv/bin/python bench/run_all.py [--smoke] [SCRIPT ...]

``--smoke`` is passed on to every benchmark (tiny sizes: it checks they run, the numbers mean
nothing). Naming scripts runs only those.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# Cheapest first, so a reader sees numbers early.
ORDER = (
    "bench_nifti.py",
    "bench_thumbnails.py",
    "bench_receiver.py",
    "bench_pipeline.py",
    "bench_pacs_store.py",
    "bench_scenarios.py",
    "bench_index.py",
    "bench_memory.py",
)
HEADER = ["measure", "ours", "reference", "ratio", "goal"]


def benchmarks() -> list[Path]:
    """Every benchmark script in bench/ (``bench_*.py``), in the order they are run."""
    found = {p.name: p for p in BENCH.glob("bench_*.py")}
    ordered = [found.pop(name) for name in ORDER if name in found]
    return ordered + sorted(found.values())


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def rows(output: str) -> list[list[str]]:
    """The table rows a benchmark printed: five-cell rows after its header row.

    The header is a five-cell row whose first cell is ``measure``; it, and rules such as
    ``|---|---|``, are left out. Rows before a header are not part of a table. A benchmark of
    several scenarios may print six cells under ``scenario | measure | ...``: the first two
    become one, ``scenario: measure``.
    """
    found: list[list[str]] = []
    width = 0
    for line in output.splitlines():
        cells = _cells(line)
        if len(cells) == 5 and cells[0].lower() == "measure":
            width = 5
        elif len(cells) == 6 and [c.lower() for c in cells[:2]] == ["scenario", "measure"]:
            width = 6
        elif width and len(cells) == width and not set(cells[0]) <= {"-"}:
            if width == 6:
                cells = [f"{cells[0]}: {cells[1]}", *cells[2:]]
            found.append(cells)
    return found


def run(script: Path, extra: list[str]) -> tuple[list[list[str]], str | None]:
    """Run one benchmark; its rows, and why it failed (``None`` when it did not)."""
    print(f"== {script.name} ...", file=sys.stderr, flush=True)
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script), *extra], capture_output=True, text=True, check=False
    )
    took = time.monotonic() - start
    print(f"   {took:.0f} s, exit {result.returncode}", file=sys.stderr, flush=True)
    found = rows(result.stdout)
    if result.returncode != 0:
        failure = f"exit {result.returncode}"
    elif not found:
        failure = "printed no table"
    else:
        return found, None
    print(result.stdout[-2000:], result.stderr[-3000:], sep="\n", file=sys.stderr)
    return found, failure


def print_table(table: list[list[str]]) -> None:
    """Print rows of five cells as one Markdown table with aligned columns."""
    widths = [max(len(r[i]) for r in [HEADER, *table]) for i in range(5)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in table:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="run every benchmark at a tiny size (checks they run; the numbers mean nothing)",
    )
    parser.add_argument(
        "scripts", nargs="*", type=Path, help="benchmarks to run (default: every bench_*.py)"
    )
    args = parser.parse_args(argv)
    scripts = [p.resolve() for p in args.scripts] or benchmarks()
    missing = [str(p) for p in scripts if not p.is_file()]
    if missing:
        parser.error(f"no such benchmark: {', '.join(missing)}")
    extra = ["--smoke"] if args.smoke else []
    table: list[list[str]] = []
    failures: list[str] = []
    for script in scripts:
        found, failure = run(script, extra)
        table += [[f"{script.stem.removeprefix('bench_')}: {r[0]}", *r[1:]] for r in found]
        if failure:
            failures.append(f"{script.name} ({failure})")
            table.append([f"{script.name}: FAILED ({failure})", "-", "-", "-", "-"])
    print_table(table)
    if failures:
        print(
            f"{len(failures)} of {len(scripts)} benchmarks failed: {', '.join(failures)}; "
            "their output is above",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
