"""Thin operators over :mod:`dicomflow.pipeline.steps`: a batch id in, one step, a summary out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from dicomflow.config import load_settings


class BatchStepOperator(BaseOperator):
    """Run one pipeline step on the batch named in the DAG run's conf.

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
