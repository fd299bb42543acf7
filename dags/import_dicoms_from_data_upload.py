"""import-dicoms-from-data-upload: import files of the uploads area into a project's dataset.

import (download, unpack, detect, feed the spool, trigger service-process-incoming-dcm per
batch, report) -> delete the uploads, only when asked for and the import succeeded.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from operators.imports import DeleteUploadsOperator, ImportUploadsOperator

with DAG(
    dag_id="import-dicoms-from-data-upload",
    description="Import uploaded DICOM (loose, folders, zip archives) into a project's dataset.",
    schedule=None,
    catchup=False,
    max_active_runs=4,
    params={
        "project": Param(
            "admin",
            type="string",
            minLength=1,
            maxLength=16,
            title="Project",
            description="An existing project (checked when the run starts).",
        ),
        "dataset": Param(
            "",
            type="string",
            minLength=1,
            maxLength=16,
            title="Dataset",
            description="Dataset name (an AE title); created on first use.",
        ),
        "uploads": Param(
            [],
            type="array",
            items={"type": "string"},
            minItems=1,
            title="Uploaded files",
            description="Upload ids (all their files) or <upload id>/<path>, as the Data "
            "Upload page lists them.",
        ),
        "extension": Param(
            ".dcm",
            type="string",
            title="DICOM file extension",
            description="Only files with this extension are considered; empty: every file, "
            "DICOM detected by content.",
        ),
        "delete_upload": Param(
            False,
            type="boolean",
            title="Delete the uploads afterwards",
            description="Only when the import succeeded.",
        ),
    },
    tags=["dicomflow", "import"],
) as dag:
    imported = ImportUploadsOperator(task_id="import_uploads", retries=0)
    cleanup = DeleteUploadsOperator(task_id="delete_uploads", retries=0)
    imported >> cleanup
