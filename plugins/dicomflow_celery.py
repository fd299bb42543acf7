"""Celery's configuration for Airflow's workers: Airflow's own, plus warm task processes.

``[celery] celery_config_options`` names :data:`CELERY_CONFIG` when tasks run on Celery
workers (``airflow.executor: celery``). A Celery worker runs each task in a process of its
prefork pool, which forks the task's process. The worker imports what the platform's tasks
import before it forks its pool (Celery's ``worker_init``), so that every task process starts
with them loaded, as with the LocalExecutor (:mod:`dicomflow_executor`). The scheduler and the
API server read the same configuration and import nothing more: they start no worker.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init
from dicomflow_executor import warm_up

__all__ = ["CELERY_CONFIG"]

#: Airflow's default Celery configuration, unchanged.
CELERY_CONFIG: dict[str, Any] = DEFAULT_CELERY_CONFIG


@worker_init.connect
def _warm_up_before_the_pool_forks(**_: Any) -> None:
    warm_up()
