"""Thin operators over :mod:`dicomflow.pipeline`: the batch id in, one core call, a summary out."""

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
        The name of a function of :mod:`dicomflow.pipeline` (``store_to_pacs``, ...).
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
        import dicomflow.pipeline as pipeline

        function = getattr(pipeline, self.step)
        extra = {}
        for argument, (task_id, key) in self.from_tasks.items():
            upstream = context["ti"].xcom_pull(task_ids=task_id) or {}
            extra[argument] = upstream.get(key)
        result: dict[str, Any] = function(
            load_settings(create_secrets=False), self.batch_id, **extra
        )
        return result
