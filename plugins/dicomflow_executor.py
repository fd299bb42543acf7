"""Airflow's LocalExecutor, with what the platform's tasks import loaded before it forks.

Every task of a DAG run is a process forked from one of the LocalExecutor's workers, which are
forked from the scheduler. A task process of the processing DAG then imports the DAG file and
the pipeline's modules (pydicom, SQLAlchemy, NumPy, Pillow, the clients), some half a second of
CPU, six times per run (Airflow's task runner is loaded with the executor already). Imported
here, in the scheduler before its workers fork, they are in every task process from its first
instruction and shared by all of them until written to (copy on write).

Only modules are imported: no connection, thread or file is opened, so forking stays safe.
"""

from __future__ import annotations

import importlib
import logging

from airflow.executors.local_executor import LocalExecutor

__all__ = ["WARM_MODULES", "WarmLocalExecutor", "warm_up"]

log = logging.getLogger(__name__)

#: What the processing DAG's and the validation lane's tasks import (the import DAGs run
#: seldom, and import the rest themselves).
WARM_MODULES: tuple[str, ...] = (
    "dicomflow.pipeline.steps",
    "dicomflow.index.postgres",
    "dicomflow.index.opensearch",
    "psycopg2",
    "operators.pipeline",
)


def warm_up() -> None:
    """Import :data:`WARM_MODULES` into this process, before it forks the tasks' processes."""
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except Exception:
            # A task that needs the module fails with the same error, in its own log, where
            # its user looks; the process that warms up goes on.
            log.exception("could not import %s ahead of the tasks", name)


class WarmLocalExecutor(LocalExecutor):
    """A :class:`LocalExecutor` whose workers start with :data:`WARM_MODULES` imported."""

    def start(self) -> None:
        warm_up()
        super().start()
