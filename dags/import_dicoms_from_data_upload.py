"""import-dicoms-from-data-upload: import files of the uploads area into a project's dataset.

import (download, unpack, detect, feed the spool, trigger service-process-incoming-dcm per
batch, report) -> verify (wait for the batches, confirm every instance in the PACS by SOP
Instance UID and dataset hash) and delete the uploads, only when asked for and the import
succeeded.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from operators.imports import (
    DeleteUploadsOperator,
    ImportUploadsOperator,
    VerifyImportOperator,
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
        "series": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Series",
            description="Only these Series Instance UIDs (a reviewed selection); empty: all.",
        ),
        "overrides": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Overridden flags",
            description="Subject flags the user overrode on the review page (for the report).",
        ),
        "verify_wait": Param(
            1800,
            type="integer",
            minimum=0,
            title="Verification wait (s)",
            description="How long verification waits for the import's batches to be processed.",
        ),
    },
    tags=["dicomflow", "import"],
) as dag:
    imported = ImportUploadsOperator(task_id="import_uploads", retries=0)
    cleanup = DeleteUploadsOperator(task_id="delete_uploads", retries=0)
    verified = VerifyImportOperator(task_id="verify_import", retries=0)
    imported >> [verified, cleanup]
