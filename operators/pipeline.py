"""Thin operators over :mod:`dicomflow.pipeline.steps`: a batch id in, one step, a summary out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from dicomflow.config import load_settings


def record_failure(context: Any) -> None:
    """A step failed for good (its retries are spent): the batch is failed, and says why."""
    from dicomflow.pipeline.failures import fail_batch
    from dicomflow.platform import Platform

    task = context["ti"]
    batch_id = str(context["params"].get("batch_id") or "")
    if not batch_id:
        return
    reason = context.get("exception") or "the step failed (see its log)"
    with Platform(load_settings(create_secrets=False)) as platform:
        fail_batch(platform, batch_id, str(task.task_id), str(reason))


class BatchStepOperator(BaseOperator):
    """Run one pipeline step on the batch named in the DAG run's conf.

    A step that fails for good marks its batch ``failed`` (:func:`record_failure`).

    Parameters
    ----------
    step
        The name of a function of :mod:`dicomflow.pipeline.steps` (``store_to_pacs``, ...).
    from_tasks
        Keyword arguments filled from upstream tasks' results: ``{argument: (task id, key)}``.
    """

    template_fields: Sequence[str] = ("batch_id",)
    ui_color = "#d8ecf5"

    def __init__(
        self,
        *,
        step: str,
        batch_id: str = "{{ params.batch_id }}",
        from_tasks: dict[str, tuple[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("on_failure_callback", record_failure)
        super().__init__(**kwargs)
        self.step = step
        self.batch_id = batch_id
        self.from_tasks = from_tasks or {}

    def execute(self, context: Any) -> dict[str, Any]:
        from dicomflow.pipeline import steps
        from dicomflow.platform import Platform

        function = getattr(steps, self.step)
        extra = {}
        for argument, (task_id, key) in self.from_tasks.items():
            upstream = context["ti"].xcom_pull(task_ids=task_id) or {}
            extra[argument] = upstream.get(key)
        with Platform(load_settings(create_secrets=False)) as platform:
            result: dict[str, Any] = function(platform, self.batch_id, **extra)
        return result
