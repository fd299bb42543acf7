"""Run every benchmark in bench/ and print one table: measure, ours, reference, ratio, goal.

Each benchmark prints rows of five ``|``-separated cells; this collects them under the name of
the benchmark. A benchmark that fails is reported with its exit code and the run goes on.
"""

from __future__ import annotations

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
    "bench_index.py",
)


def rows(output: str) -> list[list[str]]:
    """The table rows a benchmark printed (header rows left out)."""
    found = []
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0].lower() == "measure" or set(cells[0]) <= {"-"}:
            continue
        found.append(cells)
    return found


def main() -> int:
    scripts = [BENCH / name for name in ORDER if (BENCH / name).exists()]
    scripts += sorted(p for p in BENCH.glob("bench_*.py") if p.name not in ORDER)
    table: list[list[str]] = []
    failed = 0
    for script in scripts:
        print(f"== {script.name} ...", file=sys.stderr, flush=True)
        start = time.monotonic()
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        took = time.monotonic() - start
        print(f"   {took:.0f} s, exit {result.returncode}", file=sys.stderr, flush=True)
        if result.returncode != 0:
            failed += 1
            table.append([f"{script.name}: FAILED (exit {result.returncode})", "-", "-", "-", "-"])
            print(result.stderr[-2000:], file=sys.stderr)
            continue
        table += [[f"{script.stem[6:]}: {r[0]}", *r[1:]] for r in rows(result.stdout)]
    widths = [
        max(len(r[i]) for r in [["measure", "ours", "reference", "ratio", "goal"], *table])
        for i in range(5)
    ]
    header = ["measure", "ours", "reference", "ratio", "goal"]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in table:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
