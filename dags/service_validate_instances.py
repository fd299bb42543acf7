"""service-validate-instances: the background validation lane (conf: ``{"batch_ids": [...]}``).

dciodvfy on every instance the first lane left, the reports and documents filled in, then the
batches' files removed. One run at a time, one task slot, below every processing task: it
yields the machine to what makes series searchable and archived.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from operators.pipeline import BatchStepOperator

with DAG(
    dag_id="service-validate-instances",
    description="Check every instance of done batches with dciodvfy (background lane).",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    max_active_tasks=1,
    params={"batch_ids": Param([], type="array", description="Done batches to check")},
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "priority_weight": 1,
        "weight_rule": "absolute",
    },
    tags=["dicomflow", "service", "validation"],
) as dag:
    BatchStepOperator(task_id="validate_the_rest", step="validate_the_rest")
