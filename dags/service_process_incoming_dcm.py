"""service-process-incoming-dcm: one run per received batch (conf: ``{"batch_id": ...}``).

read the batch -> store to PACS | thumbnails | validate            (in parallel)
store + thumbnails -> index (pacs_state "stored")                  store -> map to project
validate -> record the validation in the documents (before or after the index step)
finish (batch done, spool files removed) only when every step succeeded.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from operators.pipeline import BatchStepOperator

with DAG(
    dag_id="service-process-incoming-dcm",
    description="Store a received batch in the PACS, index, map, thumbnail and validate it.",
    schedule=None,
    catchup=False,
    max_active_runs=16,
    params={"batch_id": Param("", type="string", description="Spool batch to process")},
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    tags=["dicomflow", "service"],
) as dag:
    read = BatchStepOperator(task_id="read_batch", step="read_batch")
    store = BatchStepOperator(task_id="store_to_pacs", step="store_to_pacs")
    thumbnails = BatchStepOperator(task_id="thumbnails", step="make_thumbnails")
    validation = BatchStepOperator(task_id="validate", step="validate")
    mapping = BatchStepOperator(task_id="map_series", step="map_series")
    index = BatchStepOperator(
        task_id="index_series",
        step="index_series",
        from_tasks={"thumbnails": ("thumbnails", "thumbnails")},
    )
    record = BatchStepOperator(
        task_id="record_validation",
        step="record_validation",
        from_tasks={"validation": ("validate", "validation")},
    )
    finish = BatchStepOperator(task_id="finish", step="finish")

    read >> [store, thumbnails, validation]
    store >> mapping
    [store, thumbnails] >> index
    validation >> record
    [index, record, mapping] >> finish
