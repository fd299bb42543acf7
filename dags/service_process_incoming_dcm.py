"""service-process-incoming-dcm: one run for one or more received batches.

conf: ``{"batch_ids": [...]}`` (runs of older versions: ``{"batch_id": ...}``). The dispatcher
hands batches that closed together to one run.

store to PACS (then map to projects) | thumbnails | validate (representative set), in parallel
-> index (pacs_state "stored", thumbnails and validation: each series' documents written once)
-> finish (batches done; files kept for service-validate-instances, the background lane).

Few tasks, each doing a whole step for every series of the run: a task costs Airflow a
scheduling round and a process, whatever the work in it.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from operators.pipeline import BatchStepOperator

with DAG(
    dag_id="service-process-incoming-dcm",
    description="Store received batches in the PACS, index, map, thumbnail and validate them.",
    schedule=None,
    catchup=False,
    max_active_runs=16,
    params={
        "batch_ids": Param([], type="array", description="Spool batches to process"),
        "batch_id": Param("", type="string", description="One spool batch (older runs)"),
    },
    # Ahead of the background validation lane, whatever the DAG shapes.
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=5),
        "priority_weight": 10,
        "weight_rule": "absolute",
    },
    tags=["dicomflow", "service"],
) as dag:
    store = BatchStepOperator(task_id="store_to_pacs", step="store_to_pacs")
    thumbnails = BatchStepOperator(task_id="thumbnails", step="make_thumbnails")
    validation = BatchStepOperator(task_id="validate", step="validate")
    index = BatchStepOperator(
        task_id="index_series",
        step="index_series",
        from_tasks={
            "thumbnails": ("thumbnails", "thumbnails"),
            "validation": ("validate", "validation"),
        },
    )
    finish = BatchStepOperator(task_id="finish", step="finish")

    [store, thumbnails, validation] >> index >> finish
