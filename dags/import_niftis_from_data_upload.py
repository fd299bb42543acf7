"""import-niftis-from-data-upload: convert uploaded NIfTI to DICOM (+SEG) and import it.

import (download, unpack, find basic/nnU-Net folders, convert case by case, feed the spool,
trigger service-process-incoming-dcm per batch, report) -> delete the uploads, only when
asked for and every case was imported.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from dicomflow.nifti.options import SWITCHES
from operators.imports import (
    DeleteNiftiUploadsOperator,
    ImportNiftiUploadsOperator,
    upload_import_params,
)

with DAG(
    dag_id="import-niftis-from-data-upload",
    description="Convert uploaded NIfTI (folders, zips; basic or nnU-Net layout) to DICOM "
    "image series and SEG, and import them into a project's dataset.",
    schedule=None,
    catchup=False,
    max_active_runs=2,
    params={
        **upload_import_params(
            "folders or zips of NIfTI with meta_data.json / seg_info.json, or nnU-Net datasets.",
            "Only when every case was imported.",
        ),
        **{
            switch.name: Param(
                switch.default,
                type="string",
                enum=switch.values,
                title=switch.title,
                description=switch.help,
            )
            for switch in SWITCHES
        },
    },
    tags=["dicomflow", "import", "nifti"],
) as dag:
    imported = ImportNiftiUploadsOperator(task_id="import_niftis", retries=0)
    cleanup = DeleteNiftiUploadsOperator(task_id="delete_uploads", retries=0)
    imported >> cleanup
