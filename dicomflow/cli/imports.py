"""``dicomflow import`` and ``dicomflow import-nifti``: files on this machine into a dataset."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

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
from dicomflow.nifti.options import SWITCHES

ReportT = TypeVar("ReportT", bound=PrintableReport)
F = TypeVar("F", bound=Callable[..., object])

_paths = click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
)
_project = click.option("--project", required=True, help="An existing project.")
_dataset = click.option(
    "--dataset", required=True, help="Dataset name (an AE title); created if new."
)


def _nifti_switches(function: F) -> F:
    """The NIfTI import's switches as options (``--modality``, ``--unknown-labels``, ``--4d``)."""
    for switch in reversed(SWITCHES):
        function = click.option(
            switch.flag,
            switch.name,
            type=click.Choice(switch.values, case_sensitive=False),
            default=switch.default,
            show_default=True,
            help=switch.help,
        )(function)
    return function


def _run_import(
    run: Callable[[ProgressBar | None], ReportT],
    *,
    label: str,
    no_progress: bool,
    as_json: bool,
) -> ReportT:
    """Run an import with a progress bar and print its report; user errors end the command."""
    from dicomflow.importer import ImportRefusedError

    bar = None if no_progress or as_json else ProgressBar(label)
    try:
        with database_errors():
            report = run(bar)
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

    The files go through the checks of every door into spool batches, each handed over for
    processing by service-process-incoming-dcm (`dicomflow batches` shows where each is).
    Nothing given is modified or deleted. Exits 1 when an input failed.
    """
    from dicomflow.importer import ImportOutcome, import_paths

    settings = settings_of(ctx)
    report = _run_import(
        lambda bar: import_paths(
            settings, paths, project, dataset, extension=extension, progress=bar
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
@_nifti_switches
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
    converted and fed through the checks of every door into spool batches, each handed over
    for processing. A bad case or folder is named in the report and does not stop the
    others. Nothing given is modified. Exits 1 when anything failed.
    """
    from dicomflow.importer.nifti import import_nifti
    from dicomflow.importer.nifti_report import NiftiImportOutcome
    from dicomflow.nifti.options import NiftiImportOptions

    settings = settings_of(ctx)
    options = NiftiImportOptions.from_choices(
        modality=modality, unknown_labels=unknown_labels, four_d=four_d
    )
    report = _run_import(
        lambda bar: import_nifti(settings, paths, project, dataset, options=options, progress=bar),
        label="converting and importing",
        no_progress=no_progress,
        as_json=as_json,
    )
    if report.outcome is not NiftiImportOutcome.IMPORTED:
        sys.exit(1)


COMMANDS = [import_command, import_nifti_command]
