"""`make bench` (bench/run_all.py): one table of every benchmark, and a failure named.

The benchmarks here are small scripts written by the test: a real benchmark cannot be made
to fail on purpose, and the point is what the runner does with any benchmark that fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUN_ALL = Path(__file__).resolve().parents[2] / "bench" / "run_all.py"

GOOD = """
import sys
print("measure | ours | reference | ratio | goal")
print("rate | 10/s | 20/s | 0.50 | >= 0.5")
print("arguments | " + " ".join(sys.argv[1:]) + " | - | - | -")
"""
BROKEN = """
raise TypeError("validate_series() got an unexpected keyword argument 'workers'")
"""
SCENARIOS = """
print("scenario | measure | ours | reference | ratio | goal")
print("one association | rate | 10 | 20 | 0.50 | >= 0.6")
print("20 senders | time (s) | 5 | 4 | 1.25 | <= 1.25")
"""
NO_TABLE = """
print("measured nothing")
"""


def _bench(folder: Path, name: str, code: str) -> Path:
    path = folder / name
    path.write_text(code)
    return path


def _run_all(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN_ALL), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_failing_benchmark_fails_the_run_and_is_named(tmp_path: Path) -> None:
    broken = _bench(tmp_path, "bench_broken.py", BROKEN)
    good = _bench(tmp_path, "bench_good.py", GOOD)
    silent = _bench(tmp_path, "bench_silent.py", NO_TABLE)

    result = _run_all(broken, good, silent)

    assert result.returncode == 1
    # The others still run and report; the failures are named in the table and at the end.
    assert "| good: rate" in result.stdout
    assert "bench_broken.py: FAILED (exit 1)" in result.stdout
    assert "bench_silent.py: FAILED (printed no table)" in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert "2 of 3 benchmarks failed" in last
    assert "bench_broken.py (exit 1)" in last
    assert "bench_silent.py (printed no table)" in last
    # What went wrong is shown, not only that it did.
    assert "unexpected keyword argument 'workers'" in result.stderr


def test_benchmarks_that_run_give_one_table_and_exit_0(tmp_path: Path) -> None:
    good = _bench(tmp_path, "bench_good.py", GOOD)
    other = _bench(tmp_path, "bench_other.py", GOOD)

    result = _run_all(good, other)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split("|")[1].strip() == "measure"
    assert [line.split("|")[1].strip() for line in lines[2:]] == [
        "good: rate",
        "good: arguments",
        "other: rate",
        "other: arguments",
    ]


def test_smoke_is_passed_on_to_every_benchmark(tmp_path: Path) -> None:
    good = _bench(tmp_path, "bench_good.py", GOOD)

    result = _run_all("--smoke", good)

    assert result.returncode == 0, result.stderr
    assert "| good: arguments | --smoke " in result.stdout


def test_a_benchmark_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    result = _run_all(tmp_path / "bench_nothing.py")

    assert result.returncode == 2
    assert f"no such benchmark: {tmp_path / 'bench_nothing.py'}" in result.stderr


def test_a_table_of_scenarios_gives_rows_named_after_scenario_and_measure(
    tmp_path: Path,
) -> None:
    scenarios = _bench(tmp_path, "bench_scenarios.py", SCENARIOS)

    result = _run_all(scenarios)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]] == [
        ["scenarios: one association: rate", "10", "20", "0.50", ">= 0.6"],
        ["scenarios: 20 senders: time (s)", "5", "4", "1.25", "<= 1.25"],
    ]
