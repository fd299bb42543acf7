"""``dicomflow import`` and ``dicomflow import-nifti``: files on this machine into a dataset."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

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
    shell_actor,
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
    echo: bool = True,
) -> ReportT:
    """Run an import with a progress bar and print its report; user errors end the command.

    ``echo=False`` leaves the printing to the caller (a verification follows).
    """
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
    if echo:
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
@click.option(
    "--review",
    "review_only",
    is_flag=True,
    help="Read the headers only, print the tree patient/study/series and write a selection "
    "file (--selection-file); import nothing.",
)
@click.option(
    "--selection-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("dicomflow-selection.json"),
    show_default=True,
    help="Where --review writes the selection.",
)
@click.option(
    "--select",
    "select_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Import only the series marked selected in this selection file.",
)
@click.option(
    "--series",
    "series_uids",
    multiple=True,
    help="Import only this Series Instance UID (repeat for more).",
)
@click.option(
    "--no-references",
    is_flag=True,
    help="Do not add the series a selected series references (its images, plan, ...).",
)
@click.option("--expect-patient-id", default="", help="Expected Patient ID.")
@click.option("--expect-sex", default="", help="Expected Patient's Sex: M, F or O.")
@click.option("--expect-birth-date", default="", help="Expected birth date, YYYYMMDD.")
@click.option(
    "--expect-patient",
    "expect_patient",
    default="",
    help="Expect the patient with this Patient ID the project already holds (its sex and "
    "birth date too).",
)
@click.option(
    "--override-subject",
    is_flag=True,
    help="Import selected series that disagree with the expected subject or have an empty "
    "Patient ID (recorded in the audit trail).",
)
@click.option(
    "--verify",
    is_flag=True,
    help="After the import, wait for its batches and confirm every instance in the PACS "
    "(SOP Instance UID and dataset hash); exit 1 unless all are.",
)
@click.option(
    "--verify-wait",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    help="Seconds --verify waits for the batches to be processed.",
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
    review_only: bool,
    selection_file: Path,
    select_file: Path | None,
    series_uids: tuple[str, ...],
    no_references: bool,
    expect_patient_id: str,
    expect_sex: str,
    expect_birth_date: str,
    expect_patient: str,
    override_subject: bool,
    verify: bool,
    verify_wait: float,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Import DICOM from PATHS (files, folders, zip archives) into a project's dataset.

    The files go through the checks of every door into spool batches, each handed over for
    processing by service-process-incoming-dcm (`dicomflow batches` shows where each is).
    Nothing given is modified or deleted. Exits 1 when an input failed.

    With --review nothing is imported: the headers are read and the tree printed, with the
    references between series, what the project holds and what disagrees with the expected
    subject; the selection file it writes is edited and given back with --select. --select
    and --series import only those series and what they reference.
    """
    from dicomflow.importer import ImportOutcome, import_paths

    settings = settings_of(ctx)
    if select_file is not None and series_uids:
        raise CliError("give --select FILE or --series UID, not both")
    selective = review_only or select_file is not None or bool(series_uids)
    chosen: set[str] | None = None
    overrides: list[str] = []
    if selective:
        from dicomflow.importer.selection import write_selection

        review = _review(
            settings,
            paths,
            project,
            extension,
            (expect_patient_id, expect_sex, expect_birth_date, expect_patient),
        )
        if review_only:
            write_selection(selection_file, review, review.default_selection())
            if as_json:
                click.echo(json.dumps(review.as_dict(), indent=2))
            else:
                for line in review.lines():
                    click.echo(line)
                click.echo(
                    f"selection written to {selection_file}: edit it, then "
                    f"dicomflow import ... --select {selection_file}"
                )
            sys.exit(1 if review.failures else 0)
        chosen, overrides = _selection(
            settings,
            review,
            project,
            paths,
            select_file=select_file,
            series_uids=series_uids,
            references=not no_references,
            override=override_subject,
        )

    def keep_overrides(report: Any) -> None:
        report.overrides = overrides

    report = _run_import(
        lambda bar: import_paths(
            settings,
            paths,
            project,
            dataset,
            extension=extension,
            progress=bar,
            series=chosen,
            on_report=keep_overrides,
        ),
        label="importing",
        no_progress=no_progress,
        as_json=as_json,
        echo=not (verify and as_json),
    )
    if verify and not _verify(settings, report, verify_wait, as_json=as_json):
        sys.exit(1)
    if report.outcome is ImportOutcome.FAILED:
        sys.exit(1)


def _review(
    settings: Any,
    paths: tuple[Path, ...],
    project: str,
    extension: str,
    expect: tuple[str, str, str, str],
) -> Any:
    """Review PATHS against the expected subject and what the project's index holds."""
    from dicomflow.importer import ImportRefusedError, normalize_extension
    from dicomflow.importer.review import ExpectedSubject
    from dicomflow.importer.review_files import review_paths
    from dicomflow.index import SeriesQuery, open_index

    patient_id, sex, birth_date, known_patient = expect
    try:
        ext = normalize_extension(extension)
        expected = ExpectedSubject(patient_id, sex, birth_date)
    except (ImportRefusedError, ValueError) as exc:
        raise CliError(str(exc)) from None
    with database_errors():
        index = open_index(settings)
        try:
            if known_patient:
                found = index.search(project, SeriesQuery(patient_id=known_patient, size=1))
                if not found.items:
                    raise CliError(
                        f"--expect-patient: project {project!r} holds no patient with "
                        f"Patient ID {known_patient!r}"
                    )
                expected = ExpectedSubject.from_document(found.items[0])
            return review_paths(
                settings,
                list(paths),
                extension=ext,
                expected=expected,
                held=lambda uid: index.get(project, uid) is not None,
            )
        finally:
            index.close()


def _selection(
    settings: Any,
    review: Any,
    project: str,
    paths: tuple[Path, ...],
    *,
    select_file: Path | None,
    series_uids: tuple[str, ...],
    references: bool,
    override: bool,
) -> tuple[set[str], list[str]]:
    """The series to import; an override of flagged series is recorded in the audit trail."""
    from dicomflow.importer.review import SubjectMismatchError
    from dicomflow.importer.selection import (
        SelectionError,
        read_selection,
        record_override,
        resolve_selection,
    )

    try:
        selected = read_selection(select_file) if select_file else list(series_uids)
        chosen, flags = resolve_selection(
            review, selected, references=references, override=override
        )
    except (SelectionError, SubjectMismatchError) as exc:
        raise CliError(str(exc)) from None
    if flags:
        from dicomflow.access.audit import Audit
        from dicomflow.db.audit import AuditStore
        from dicomflow.db.session import make_engine

        with database_errors():
            engine = make_engine(settings.platform_db_url)
            try:
                record_override(
                    Audit(AuditStore(engine)),
                    shell_actor(),
                    project,
                    " ".join(str(p) for p in paths)[:500],
                    flags,
                )
            finally:
                engine.dispose()
    return chosen, [f.message for f in flags]


def _verify(settings: Any, report: Any, wait: float, *, as_json: bool) -> bool:
    """Confirm the import in the PACS; print the report with the verification."""
    from dicomflow.importer.verify import VerifyState, counts, verify_import
    from dicomflow.pacs.client import DicomWebClient
    from dicomflow.spool.store import Spool

    with DicomWebClient.from_settings(settings) as pacs:
        outcome = verify_import(report, Spool.from_settings(settings), pacs, wait=wait)
    if as_json:
        data = report.as_dict()
        data["counts"] = counts(report)
        click.echo(json.dumps(data, indent=2))
    else:
        for line in outcome.lines():
            click.echo(line)
    return outcome.state is VerifyState.VERIFIED


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
