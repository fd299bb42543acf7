"""How long the commands scripts call in loops take: ``--help``, ``status``, ``series list|show``.

Starts a stack of its own (free loopback ports, a throwaway data directory), sends one small
series with ``dcmsend`` and waits until it is searchable, then runs each command as a fresh
process, as a script does, several times. Reference, measured in the same run: the interpreter
alone (``python -c pass``), the floor every command pays. Prints rows
``measure | ours | reference | ratio | goal`` (median wall seconds); never asserts.

Usage: ``python bench/bench_cli.py [--repeat 15] [--smoke]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import dcmsend, make_instances
from smoke import parse_args

from dicomflow.config import load_settings
from dicomflow.index import open_index
from dicomflow.stack.isolated import stack_data_dir, stack_environment
from dicomflow.stack.supervisor import Stack

GOAL_S = 0.3


def timed(command: list[str], env: dict[str, str], repeat: int) -> float:
    """Median wall seconds of ``command`` run ``repeat`` times (after one unmeasured run)."""
    times: list[float] = []
    for i in range(repeat + 1):
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(
                f"{' '.join(command)} failed ({done.returncode}): {done.stdout}{done.stderr}"
            )
        if i:
            times.append(elapsed)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs per command")
    args = parse_args(parser, {"repeat": 2})
    work = Path(tempfile.mkdtemp(prefix="dicomflow-bench-cli-"))
    data_dir = stack_data_dir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
    env.update(stack_environment(data_dir))
    settings = load_settings(environ=env)
    stack = Stack(settings)
    python = sys.executable
    cli = [python, "-m", "dicomflow.cli"]
    try:
        files = work / "files"
        files.mkdir()
        [series_uid] = make_instances(files, 1, 5)
        # As `dicomflow up` runs it: `status` reports the supervisor too.
        stack.up(report=lambda _m: None, supervise=True)
        dcmsend(settings.receiver.port, files, "bench", "admin")
        index = open_index(settings)
        try:
            deadline = time.monotonic() + 300
            while index.get("admin", series_uid) is None:
                if time.monotonic() > deadline:
                    raise SystemExit("the bench series was not searchable within 300 s")
                time.sleep(0.2)
        finally:
            index.close()
        floor = timed([python, "-c", "pass"], env, args.repeat)
        rows = [
            ("dicomflow --help", [*cli, "--help"]),
            ("dicomflow status", [*cli, "status"]),
            ("dicomflow series list", [*cli, "series", "list"]),
            ("dicomflow series show UID", [*cli, "series", "show", series_uid]),
        ]
        measured = [(name, timed(command, env, args.repeat)) for name, command in rows]
    finally:
        stack.down(report=lambda _m: None)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"median of {args.repeat} runs each; reference: `python -c pass` ({floor:.3f} s)")
    print(f"{'measure':40} | {'ours (s)':>9} | {'reference':>9} | {'ratio':>6} | goal")
    for name, seconds in measured:
        print(f"{name:40} | {seconds:9.3f} | {floor:9.3f} | {seconds / floor:6.1f} | <= {GOAL_S} s")


if __name__ == "__main__":
    main()
