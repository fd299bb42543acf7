"""Thin operators over :mod:`dicomflow.importer.uploads`: Params in, one core call, out."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from airflow.sdk import BaseOperator, Param
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from dicomflow.config import load_settings


def upload_import_params(uploads_hint: str, delete_hint: str) -> dict[str, Param]:
    """The Params every import-from-data-upload DAG asks for (the Airflow UI's form).

    Parameters
    ----------
    uploads_hint
        What the uploads may hold, appended to the field's description.
    delete_hint
        When the uploads are deleted, as the delete switch's description.
    """
    return {
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
            "Upload page lists them" + (f": {uploads_hint}" if uploads_hint else "."),
        ),
        "delete_upload": Param(
            False, type="boolean", title="Delete the uploads afterwards", description=delete_hint
        ),
    }


class ImportUploadsOperator(BaseOperator):
    """Import the uploaded files named in the run's Params; fail (without retry) when it failed.

    The report goes to the task log line by line and to the object store for the page.
    """

    ui_color = "#e3f1d8"

    def execute(self, context: Any) -> dict[str, Any]:
        from dicomflow.importer.importer import ImportRefusedError
        from dicomflow.importer.report import ImportOutcome
        from dicomflow.importer.uploads import import_uploads
        from dicomflow.uploads.area import UnknownUploadError

        params = context["params"]
        settings = load_settings(create_secrets=False)
        try:
            report = import_uploads(
                settings,
                str(params["project"]).strip(),
                str(params["dataset"]).strip(),
                [str(name) for name in params["uploads"] or []],
                extension=params.get("extension") or "",
                run_id=str(context["run_id"]),
                # A reviewed import: only the selection (the page checked its flags).
                series=[str(uid) for uid in params["series"]] if params.get("series") else None,
                overrides=[str(flag) for flag in params.get("overrides") or []],
            )
        except (ImportRefusedError, UnknownUploadError) as exc:
            # A wrong project or upload name will not get better by retrying.
            raise AirflowFailException(str(exc)) from None
        for line in report.lines():
            self.log.info("%s", line)
        if report.outcome is ImportOutcome.FAILED:
            raise AirflowFailException(
                "import failed: " + "; ".join(f.detail for f in report.failures)
            )
        return {
            "outcome": report.outcome.value,
            "found": report.found,
            "imported": report.imported,
            "ignored": len(report.ignored),
            "series": len(report.series),
            "batches": report.batches,
        }


class VerifyImportOperator(BaseOperator):
    """Wait for the import's batches, confirm each instance in the PACS, store the outcome.

    Fails (without retry) when instances are missing or different once every batch finished,
    or when the batches are still being processed after ``verify_wait`` seconds.
    """

    ui_color = "#e8e0f5"

    def execute(self, context: Any) -> dict[str, Any]:
        from dicomflow.importer.uploads import read_report, store_report
        from dicomflow.importer.verify import VerifyState, counts, verify_import
        from dicomflow.pacs.client import DicomWebClient
        from dicomflow.spool.store import Spool
        from dicomflow.storage.client import ObjectStore

        params = context["params"]
        settings = load_settings(create_secrets=False)
        project, run_id = str(params["project"]).strip(), str(context["run_id"])
        store = ObjectStore.from_settings(settings)
        report = read_report(store, project, run_id)
        if report is None:
            raise AirflowFailException("the import's report is missing: nothing to verify")
        with DicomWebClient.from_settings(settings) as pacs:
            outcome = verify_import(
                report,
                Spool.from_settings(settings),
                pacs,
                wait=float(params.get("verify_wait") or 0),
            )
        store_report(store, project, run_id, report)
        for line in outcome.lines():
            self.log.info("%s", line)
        if outcome.state is not VerifyState.VERIFIED:
            raise AirflowFailException(outcome.lines()[0])
        return {"state": outcome.state.value, **counts(report)}


class _DeleteAfterImportOperator(BaseOperator):
    """Delete a run's uploads when its Params ask for it and its import report allows it."""

    ui_color = "#f5e0d8"

    @abstractmethod
    def _delete_if_imported(
        self, settings: Any, project: str, uploads: list[str], run_id: str
    ) -> tuple[str, list[str]] | None:
        """The import's outcome and the uploads its rule deleted; ``None`` without a report."""

    def execute(self, context: Any) -> list[str]:
        params = context["params"]
        if not params.get("delete_upload"):
            raise AirflowSkipException("delete_upload is false: the uploads are kept")
        settings = load_settings(create_secrets=False)
        project = str(params["project"]).strip()
        found = self._delete_if_imported(
            settings, project, list(params["uploads"]), str(context["run_id"])
        )
        if found is None:
            raise AirflowFailException("the import's report is missing: uploads kept")
        outcome, deleted = found
        if not deleted:
            raise AirflowSkipException(f"import outcome {outcome!r}: uploads kept")
        for name in deleted:
            self.log.info("deleted upload %s", name)
        return deleted


class DeleteUploadsOperator(_DeleteAfterImportOperator):
    """Delete the imported uploads when the run's Params ask for it and the import succeeded."""

    def _delete_if_imported(
        self, settings: Any, project: str, uploads: list[str], run_id: str
    ) -> tuple[str, list[str]] | None:
        from dicomflow.importer.uploads import delete_imported_uploads, read_report
        from dicomflow.storage.client import ObjectStore

        report = read_report(ObjectStore.from_settings(settings), project, run_id)
        if report is None:
            return None
        return report.outcome.value, delete_imported_uploads(settings, project, uploads, report)


def _nifti_options(params: Any) -> Any:
    """The conversion switches of a NIfTI import run's Params (defaults: the options')."""
    from dicomflow.nifti.options import NiftiImportOptions

    return NiftiImportOptions.from_choices(
        modality=params.get("modality"),
        unknown_labels=params.get("unknown_labels"),
        four_d=params.get("four_d"),
    )


class ImportNiftiUploadsOperator(BaseOperator):
    """Convert and import the uploaded NIfTI named in the run's Params.

    The good cases are imported whatever happens to the others; the task fails (without
    retry) when any case or folder failed, after the report naming them was stored.
    """

    ui_color = "#dcecf7"

    def execute(self, context: Any) -> dict[str, Any]:
        from dicomflow.importer.importer import ImportRefusedError
        from dicomflow.importer.nifti import import_nifti_uploads
        from dicomflow.importer.nifti_report import NiftiImportOutcome
        from dicomflow.uploads.area import UnknownUploadError

        params = context["params"]
        settings = load_settings(create_secrets=False)
        try:
            options = _nifti_options(params)
            report = import_nifti_uploads(
                settings,
                str(params["project"]).strip(),
                str(params["dataset"]).strip(),
                [str(name) for name in params["uploads"] or []],
                options=options,
                run_id=str(context["run_id"]),
            )
        except (ImportRefusedError, UnknownUploadError, ValueError) as exc:
            # A wrong project, upload name or switch will not get better by retrying.
            raise AirflowFailException(str(exc)) from None
        for line in report.lines():
            self.log.info("%s", line)
        if report.outcome is not NiftiImportOutcome.IMPORTED:
            failures = report.failures() or ["no NIfTI volume found"]
            raise AirflowFailException(
                f"NIfTI import {report.outcome.value}: {len(report.ok_cases)} cases imported; "
                + "; ".join(failures)
            )
        return {
            "outcome": report.outcome.value,
            "cases": len(report.cases),
            "imported_cases": len(report.ok_cases),
            "instances": report.dicom.imported,
            "series": len(report.dicom.series),
            "batches": report.dicom.batches,
        }


class DeleteNiftiUploadsOperator(_DeleteAfterImportOperator):
    """Delete the uploads of a NIfTI import when asked for and every case was imported."""

    def _delete_if_imported(
        self, settings: Any, project: str, uploads: list[str], run_id: str
    ) -> tuple[str, list[str]] | None:
        from dicomflow.importer.nifti import delete_imported_nifti_uploads, read_nifti_report
        from dicomflow.storage.client import ObjectStore

        report = read_nifti_report(ObjectStore.from_settings(settings), project, run_id)
        if report is None:
            return None
        deleted = delete_imported_nifti_uploads(settings, project, uploads, report)
        return report.outcome.value, deleted
