"""The fault table: every drill of the fault suite at full size, with the time to heal.

Starts a supervised stack of its own, then for each fault sends 2,000 CT instances (39 KB) in
20 series (the 20-sender row: one series per sender), causes the fault and types nothing
afterwards (tests/faults/drill.py). Prints per row: instances sent, acknowledged (dcmsend's
report), acknowledged ones in the PACS, series complete (in the PACS, indexed, thumbnail,
validation) and seconds from the fault until the last series was complete. Goal per row: 0
acknowledged missing, every series complete, within 120 s. Not a ``bench_*.py``: ``make bench``
leaves it out (it takes long and kills things on purpose).

    .venv/bin/python bench/faults.py [--series 20] [--per-series 100] [--only receiver,postgres]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults import drill as drills
from tests.faults.drill import HEADER, Drill, Outcome

GOAL_S = 120.0


def rows(series: int, per_series: int, wait: float) -> dict[str, Callable[[Drill], Outcome]]:
    """Every drill by a short name, sized by the arguments."""
    found: dict[str, Callable[[Drill], Outcome]] = {
        "receiver": lambda d: drills.kill_receiver(d, series, per_series, wait),
    }
    for component in drills.DURING_RUNS:
        found[component] = lambda d, c=component: drills.kill_component(
            d, c, series, per_series, wait
        )
    found["task"] = lambda d: drills.kill_task(d, series, per_series, wait)
    found["postgres-down-send"] = lambda d: drills.send_while_postgres_is_down(
        d, series, per_series, wait
    )
    found["senders"] = lambda d: drills.senders_while_scheduler_dies(d, series, per_series, wait)
    found["spool-full"] = lambda d: drills.spool_fills_up(d, series, per_series, wait)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--per-series", type=int, default=100)
    parser.add_argument("--wait", type=float, default=900.0, help="seconds to wait per row")
    parser.add_argument("--only", default="", help="comma-separated row names (default: all)")
    args = parser.parse_args()
    table = rows(args.series, args.per_series, args.wait)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or list(table)
    unknown = [n for n in chosen if n not in table]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(table)}")
    work = Path(tempfile.mkdtemp(prefix="dicomflow-faults-"))
    size = args.series * args.per_series * 40_000
    drill = Drill(work, spool_bytes=max(512 << 20, 8 * size))
    print(HEADER + f" | goal <= {GOAL_S:.0f} s", flush=True)
    try:
        drill.up()
        for name in chosen:
            if name == "spool-full" and not drill.spool_mounted:
                print(f"{name}: skipped (the spool needs a tmpfs of its own: root and mount)")
                continue
            if not drill.all_healthy():
                print(f"{name}: skipped, the stack did not heal from the row before", flush=True)
                continue
            started = time.monotonic()
            try:
                outcome = table[name](drill)
            except RuntimeError as exc:
                print(f"{name}: could not run: {exc}", flush=True)
                continue
            print(outcome.row() + f"   ({time.monotonic() - started:.0f} s in all)", flush=True)
            if outcome.incomplete:
                print(f"    incomplete: {dict(list(outcome.incomplete.items())[:3])}", flush=True)
    finally:
        drill.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
