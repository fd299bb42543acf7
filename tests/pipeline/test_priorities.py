"""The pipeline's tasks yield the CPU to the doors, and never take priority over them."""

from __future__ import annotations

import os
import subprocess
import sys

from dicomflow.config import REPO_ROOT

_SCRIPT = (
    "import os; from operators.pipeline import yield_to_the_doors; "
    "yield_to_the_doors({level}); print(os.getpriority(os.PRIO_PROCESS, 0))"
)


def _niceness_after(level: int, started_at: int) -> int:
    done = subprocess.run(
        ["nice", "-n", str(started_at), sys.executable, "-c", _SCRIPT.format(level=level)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout)


def test_a_task_process_runs_at_the_task_niceness() -> None:
    assert _niceness_after(5, started_at=0) == 5


def test_a_task_already_lower_stays_as_low() -> None:
    # A Celery worker started with `nice -n 12` keeps its tasks there.
    assert _niceness_after(5, started_at=12) == 12
