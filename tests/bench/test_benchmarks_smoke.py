"""Every benchmark in bench/ runs once at a tiny size (``--smoke``) and prints its table.

Benchmarks are run by hand, and rarely; a change to the code they call used to break them
unseen until someone wanted numbers (``make bench`` failed on a removed argument). This runs
each ``bench/bench_*.py`` as ``make bench`` does, so a new benchmark is covered without being
listed here. Only that it runs is checked: the numbers of a smoke run mean nothing. The
benchmarks that need the whole platform start a throwaway stack of their own (about a minute
each). Deselect with ``-m "not bench"``.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.bench

BENCH = Path(__file__).resolve().parents[2] / "bench"
# Well under pytest's own timeout, so that a benchmark that hangs still gets the time to stop
# the stack it started.
SMOKE_TIMEOUT = 420.0
CLEANUP_TIMEOUT = 120.0


def _load_run_all() -> ModuleType:
    """bench/run_all.py, the runner of ``make bench`` (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_run_all", BENCH / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_all = _load_run_all()


def _run_smoke(script: Path) -> tuple[int, str, str]:
    """Run ``script --smoke``; its exit code, standard output and standard error."""
    proc = subprocess.Popen(
        [sys.executable, str(script), "--smoke"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=SMOKE_TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGINT, not SIGKILL: the benchmark's `finally` stops the stack it started.
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=CLEANUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(
            f"{script.name} --smoke did not finish within {SMOKE_TIMEOUT:.0f} s\n"
            f"stdout:\n{out[-2000:]}\nstderr:\n{err[-4000:]}"
        )
    return proc.returncode, out, err


@pytest.mark.parametrize("script", run_all.benchmarks(), ids=lambda p: p.stem)
def test_benchmark_runs_and_prints_its_table(script: Path) -> None:
    returncode, out, err = _run_smoke(script)
    output = f"stdout:\n{out[-2000:]}\nstderr:\n{err[-4000:]}"
    assert returncode == 0, f"{script.name} --smoke exited with {returncode}\n{output}"
    # The rows `make bench` collects: five cells under a `measure | ours | ...` header.
    table = run_all.rows(out)
    assert table, f"{script.name} --smoke printed no table that run_all.py can read\n{output}"
    assert all(row[0] and row[1] for row in table), table
