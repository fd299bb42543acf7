"""import-dicoms-from-data-upload: import files of the uploads area into a project's dataset.

import (download, unpack, detect, feed the spool, trigger service-process-incoming-dcm per
batch, report) -> delete the uploads, only when asked for and the import succeeded.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from operators.imports import (
    DeleteUploadsOperator,
    ImportUploadsOperator,
    upload_import_params,
)

with DAG(
    dag_id="import-dicoms-from-data-upload",
    description="Import uploaded DICOM (loose, folders, zip archives) into a project's dataset.",
    schedule=None,
    catchup=False,
    max_active_runs=4,
    params={
        **upload_import_params("", "Only when the import succeeded."),
        "extension": Param(
            ".dcm",
            type="string",
            title="DICOM file extension",
            description="Only files with this extension are considered; empty: every file, "
            "DICOM detected by content.",
        ),
    },
    tags=["dicomflow", "import"],
) as dag:
    imported = ImportUploadsOperator(task_id="import_uploads", retries=0)
    cleanup = DeleteUploadsOperator(task_id="delete_uploads", retries=0)
    imported >> cleanup
