"""The stack's executor: task processes start with the pipeline's modules already loaded."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from dicomflow.config import REPO_ROOT, Settings
from dicomflow.stack.components import airflow_env

# Run in a fresh interpreter: the test process has the modules loaded already.
_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from dicomflow_executor import WARM_MODULES, WarmLocalExecutor

    assert "dicomflow.pipeline.steps" not in sys.modules
    executor = WarmLocalExecutor(parallelism=1)
    executor.start()
    try:
        (pid,) = executor.workers
        print(Path(f"/proc/{pid}/maps").read_text())
    finally:
        executor.end()
    """
)


def test_workers_fork_with_the_tasks_extension_modules_mapped(tmp_path: Path) -> None:
    # A module's compiled extension is mapped into a process once imported: the worker, and
    # every task process forked from it, holds psycopg2's, Pillow's and NumPy's from birth.
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "PYTHONPATH": f"{REPO_ROOT / 'plugins'}{os.pathsep}{REPO_ROOT}",
    }
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for extension in ("psycopg2/_psycopg", "PIL/_imaging", "numpy/_core/_multiarray_umath"):
        assert extension in done.stdout, f"{extension} is not loaded in the worker"


def test_the_stack_runs_tasks_with_it(postgres: Settings) -> None:
    assert airflow_env(postgres)["AIRFLOW__CORE__EXECUTOR"] == (
        "dicomflow_executor.WarmLocalExecutor"
    )
    celery = postgres.replace(airflow=postgres.airflow.replace(executor="celery"))
    assert airflow_env(celery)["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
