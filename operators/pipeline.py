"""Thin operators over :mod:`dicomflow.pipeline.steps`: batch ids in, one step, a summary out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from dicomflow.config import load_settings


def run_batches(params: dict[str, Any]) -> list[str]:
    """The batches a run processes: ``batch_ids``, or the single ``batch_id`` of older runs."""
    ids = [str(b) for b in params.get("batch_ids") or [] if b]
    single = str(params.get("batch_id") or "")
    return ids or ([single] if single else [])


def yield_to_the_doors(niceness: int) -> None:
    """Run this task's process, and what it starts, at nice level ``niceness`` (never higher).

    The receiver and the dispatcher stay at their own level: on a busy machine, senders are
    answered and new batches indexed on arrival before earlier batches are processed further.
    """
    # Per thread on Linux: threads and processes started after this inherit it.
    if niceness > os.getpriority(os.PRIO_PROCESS, 0):
        os.setpriority(os.PRIO_PROCESS, 0, niceness)


def record_failure(context: Any) -> None:
    """A step failed for good (its retries are spent): its batches are failed, and say why."""
    from dicomflow.pipeline.failures import fail_batch
    from dicomflow.platform import Platform

    batch_ids = run_batches(context["params"])
    reason = context.get("exception") or "the step failed (see its log)"
    with Platform(load_settings(create_secrets=False)) as platform:
        for batch_id in batch_ids:
            fail_batch(platform, batch_id, str(context["ti"].task_id), str(reason))


class BatchStepOperator(BaseOperator):
    """Run one pipeline step on the batches named in the DAG run's conf.

    A step that fails for good marks its batches ``failed`` (:func:`record_failure`).

    Parameters
    ----------
    step
        The name of a function of :mod:`dicomflow.pipeline.steps` (``store_to_pacs``, ...).
    from_tasks
        Keyword arguments filled from upstream tasks' results: ``{argument: (task id, key)}``.
    """

    ui_color = "#d8ecf5"

    def __init__(
        self,
        *,
        step: str,
        from_tasks: dict[str, tuple[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("on_failure_callback", record_failure)
        super().__init__(**kwargs)
        self.step = step
        self.from_tasks = from_tasks or {}

    def execute(self, context: Any) -> dict[str, Any]:
        from dicomflow.pipeline import steps
        from dicomflow.platform import Platform

        batch_ids = run_batches(context["params"])
        if not batch_ids:
            raise ValueError("the run's conf names no batch (batch_ids or batch_id)")
        function = getattr(steps, self.step)
        extra = {}
        for argument, (task_id, key) in self.from_tasks.items():
            upstream = context["ti"].xcom_pull(task_ids=task_id) or {}
            extra[argument] = upstream.get(key)
        settings = load_settings(create_secrets=False)
        yield_to_the_doors(settings.airflow.task_niceness)
        with Platform(settings) as platform:
            result: dict[str, Any] = function(platform, batch_ids, **extra)
        return result


__all__: Sequence[str] = [
    "BatchStepOperator",
    "record_failure",
    "run_batches",
    "yield_to_the_doors",
]
