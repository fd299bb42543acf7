"""Idle memory of the whole local stack: PSS summed over every process it started.

Starts a stack of its own on free ports, waits for it to settle, then reads each process's
proportional set size (shared pages divided among the processes that share them). Prints rows
``measure | ours | reference | ratio | goal``; never asserts.

Usage: ``python bench/bench_memory.py [--settle 60] [--smoke]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import psutil

from dicomflow.config import load_settings
from dicomflow.stack.isolated import stack_data_dir, stack_environment
from dicomflow.stack.process import marked_processes, read_record
from dicomflow.stack.supervisor import Stack

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smoke import parse_args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=60.0, help="seconds to wait after up")
    args = parse_args(parser, {"settle": 1.0})
    data_dir = stack_data_dir()
    base = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
    settings = load_settings(environ={**base, **stack_environment(data_dir)})
    stack = Stack(settings)
    try:
        stack.up(report=lambda _m: None)
        time.sleep(args.settle)
        per_component: dict[str, float] = {}
        owner: dict[int, str] = {}
        for comp in stack.components:
            record = read_record(comp.pid_file)
            proc = record.process() if record else None
            if proc is None:
                continue
            for p in [proc, *proc.children(recursive=True)]:
                owner[p.pid] = comp.name
        total = 0.0
        for proc in marked_processes(settings.data_dir):
            try:
                pss = proc.memory_full_info().pss / 2**20
            except psutil.Error:
                continue
            total += pss
            name = owner.get(proc.pid, "other")
            per_component[name] = per_component.get(name, 0.0) + pss
    finally:
        stack.down(report=lambda _m: None)
        shutil.rmtree(data_dir, ignore_errors=True)
    print("measure | ours | reference | ratio | goal")
    print(f"idle PSS of the whole stack (MiB) | {total:.0f} | - | - | <= 1536")
    for name, mib in sorted(per_component.items(), key=lambda kv: -kv[1]):
        print(f"  idle PSS {name} (MiB) | {mib:.0f} | - | - | -")


if __name__ == "__main__":
    main()
