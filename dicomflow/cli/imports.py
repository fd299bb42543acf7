"""``dicomflow import`` and ``dicomflow import-nifti``: files on this machine into a dataset."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from dicomflow.cli.options import (
    CliError,
    PrintableReport,
    ProgressBar,
    database_errors,
    echo_report,
    json_option,
    no_progress_option,
    settings_of,
)
from dicomflow.nifti.enums import FourDPolicy, Modality, UnknownLabelPolicy

if TYPE_CHECKING:
    from dicomflow.airflow_api.client import AirflowClient
    from dicomflow.config import Settings

ReportT = TypeVar("ReportT", bound=PrintableReport)

_paths = click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
)
_project = click.option("--project", required=True, help="An existing project.")
_dataset = click.option(
    "--dataset", required=True, help="Dataset name (an AE title); created if new."
)


def _run_import(
    settings: Settings,
    run: Callable[[AirflowClient, ProgressBar | None], ReportT],
    *,
    label: str,
    no_progress: bool,
    as_json: bool,
) -> ReportT:
    """Run an import with a progress bar and print its report; user errors end the command."""
    from dicomflow.airflow_api.client import AirflowClient
    from dicomflow.importer import ImportRefusedError

    bar = None if no_progress or as_json else ProgressBar(label)
    try:
        with database_errors(), AirflowClient.from_settings(settings) as client:
            report = run(client, bar)
    except ImportRefusedError as exc:
        raise CliError(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    echo_report(report, as_json)
    return report


@click.command("import")
@_paths
@_project
@_dataset
@click.option(
    "--extension",
    default=".dcm",
    show_default=True,
    help="Only files with this extension; '' detects DICOM by content, whatever the name.",
)
@json_option("Print the report as JSON.")
@no_progress_option()
@click.pass_context
def import_command(
    ctx: click.Context,
    paths: tuple[Path, ...],
    project: str,
    dataset: str,
    extension: str,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Import DICOM from PATHS (files, folders, zip archives) into a project's dataset.

    The files go through the receiver's checks into spool batches, and each batch is handed
    to Airflow's service-process-incoming-dcm (pending for the receiver's outbox when
    Airflow is down). Nothing given is modified or deleted. Exits 1 when an input failed.
    """
    from dicomflow.importer import ImportOutcome, import_paths

    settings = settings_of(ctx)
    report = _run_import(
        settings,
        lambda client, bar: import_paths(
            settings, paths, project, dataset, extension=extension, trigger=client, progress=bar
        ),
        label="importing",
        no_progress=no_progress,
        as_json=as_json,
    )
    if report.outcome is ImportOutcome.FAILED:
        sys.exit(1)


@click.command("import-nifti")
@_paths
@_project
@_dataset
@click.option(
    "--modality",
    type=click.Choice([m.value for m in Modality], case_sensitive=False),
    default=Modality.MR.value,
    show_default=True,
    help="Modality of volumes that no tag (0008|0060) or nnU-Net channel name gives.",
)
@click.option(
    "--unknown-labels",
    type=click.Choice([p.value for p in UnknownLabelPolicy]),
    default=UnknownLabelPolicy.ERROR.value,
    show_default=True,
    help="Label values not described: fail the case, or one segment 'unknown (label N)' each.",
)
@click.option(
    "--4d",
    "four_d",
    type=click.Choice([p.value for p in FourDPolicy]),
    default=FourDPolicy.SPLIT.value,
    show_default=True,
    help="4D volumes: one series per volume, or fail the case.",
)
@json_option("Print the report as JSON.")
@no_progress_option()
@click.pass_context
def import_nifti_command(
    ctx: click.Context,
    paths: tuple[Path, ...],
    project: str,
    dataset: str,
    modality: str,
    unknown_labels: str,
    four_d: str,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Convert NIfTI in PATHS to DICOM (image series + SEG) and import it into a dataset.

    PATHS are folders (basic layout with meta_data.json / seg_info.json, nnU-Net v2 datasets,
    or folders holding them), .nii/.nii.gz files or zip archives of those. Each case is
    converted and fed through the receiver's checks into spool batches, each batch handed
    to Airflow's service-process-incoming-dcm. A bad case or folder is named in the report
    and does not stop the others. Nothing given is modified. Exits 1 when anything failed.
    """
    from dicomflow.importer.nifti import import_nifti
    from dicomflow.importer.nifti_report import NiftiImportOutcome
    from dicomflow.nifti.options import NiftiImportOptions

    settings = settings_of(ctx)
    options = NiftiImportOptions(
        default_modality=Modality(modality.upper()),
        unknown_labels=UnknownLabelPolicy(unknown_labels),
        four_d=FourDPolicy(four_d),
    )
    report = _run_import(
        settings,
        lambda client, bar: import_nifti(
            settings, paths, project, dataset, options=options, trigger=client, progress=bar
        ),
        label="converting and importing",
        no_progress=no_progress,
        as_json=as_json,
    )
    if report.outcome is not NiftiImportOutcome.IMPORTED:
        sys.exit(1)


COMMANDS = [import_command, import_nifti_command]
