"""Fixtures of the NIfTI import tests: a project on the real stack."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from dicomflow.airflow_api.client import AirflowClient, AirflowRequestError
from dicomflow.config import Settings
from dicomflow.importer.nifti import NIFTI_UPLOAD_IMPORT_DAG_ID
from dicomflow.pipeline.dispatcher import INCOMING_DAG_ID
from tests.stack_testutil import project_store_with

PROJECT = "niftis"


@pytest.fixture(scope="session")
def nifti_project(platform_engine: Engine) -> str:
    """The project ``niftis`` in the real platform database."""
    project_store_with(platform_engine, PROJECT, "NIfTI import tests")
    return PROJECT


@pytest.fixture(scope="module")
def stack(
    postgres: Settings,
    orthanc: Settings,
    s3: Settings,
    airflow: Any,
    dispatcher: Any,
    nifti_project: str,
) -> Settings:
    """PostgreSQL, Orthanc, S3 and Airflow running, our DAGs parsed; the project exists."""
    # A fresh Airflow answers before its DAG processor has parsed the DAG folder.
    deadline = time.monotonic() + 120
    with AirflowClient.from_settings(postgres) as client:
        for dag_id in (NIFTI_UPLOAD_IMPORT_DAG_ID, INCOMING_DAG_ID):
            while True:
                try:
                    client.list_dag_runs(dag_id, limit=1)
                    break
                except AirflowRequestError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
    return postgres
