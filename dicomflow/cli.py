"""The ``dicomflow`` command."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from dicomflow.cli_output import PrintableReport, echo_report
from dicomflow.config import ConfigError, Settings, load_settings, settings_table
from dicomflow.index.cli import index_group, series_group
from dicomflow.spool.cli import batches

if TYPE_CHECKING:
    from dicomflow.airflow_api.client import AirflowClient
    from dicomflow.db.projects import ProjectStore
    from dicomflow.stack.supervisor import Stack


class CliError(click.ClickException):
    """A failure the user can act on; printed without a traceback."""


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.obj
    if settings is None:
        try:
            settings = load_settings(ctx.meta.get("config_file"))
        except ConfigError as exc:
            raise CliError(str(exc)) from None
        ctx.obj = settings
    return settings


pass_settings = click.make_pass_decorator(Settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Configuration file (default: $DICOMFLOW_CONFIG, else ./dicomflow.yaml if present).",
)
@click.pass_context
def main(ctx: click.Context, config_file: Path | None) -> None:
    """dicomflow: receive DICOM, archive it in a PACS, index it and prepare it for research."""
    ctx.meta["config_file"] = config_file
    if ctx.invoked_subcommand not in ("config",):
        _settings(ctx)


# --- the local stack -------------------------------------------------------------------------


def _stack(settings: Settings) -> Stack:
    from dicomflow.stack.supervisor import Stack

    return Stack(settings)


@main.command()
@pass_settings
def up(settings: Settings) -> None:
    """Start every component of the local stack and wait until all answer."""
    from dicomflow.stack.components import StackError

    stack = _stack(settings)
    click.echo(f"dicomflow: starting the local stack in {settings.data_dir}")
    try:
        started = stack.up(report=click.echo)
    except StackError as exc:
        raise CliError(str(exc)) from None
    if not started:
        click.echo("dicomflow is already running; nothing changed.")
    _print_addresses(settings)


def _print_addresses(settings: Settings) -> None:
    click.echo("")
    click.echo(f"  web pages and REST API  {settings.web.base_url}")
    click.echo(f"  Airflow                 {settings.airflow.base_url}")
    rc = settings.receiver
    click.echo(f"  DICOM receiver          {rc.host}:{rc.port}  (called AE = project, e.g. admin)")
    click.echo(f"  PACS (DICOMweb)         {settings.pacs.base_url}")
    click.echo(f"  login                   {settings.admin_user} / {settings.admin_password}")
    click.echo(f"  (credentials are kept in {settings.secrets_file}, readable by you only)")


@main.command()
@pass_settings
def down(settings: Settings) -> None:
    """Stop what `up` started, and only that."""
    stopped = _stack(settings).down(report=click.echo)
    click.echo("dicomflow stopped." if stopped else "dicomflow was not running.")


@main.command()
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON: state, pid, address per component."
)
@pass_settings
def status(settings: Settings, as_json: bool) -> None:
    """Show each component's state; exit 0 only if every one is healthy."""
    rows = _stack(settings).status()
    if as_json:
        click.echo(json.dumps({"components": [r.as_dict() for r in rows]}, indent=2))
    else:
        for row in rows:
            pid = str(row.pid) if row.pid else "-"
            click.echo(f"{row.name:<22} {row.state.value:<10} {pid:>8}  {row.address}")
    if any(r.state.value != "healthy" for r in rows):
        sys.exit(1)


@main.command()
@click.argument("component")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--lines", default=50, show_default=True, help="How many last lines to show.")
@pass_settings
def logs(settings: Settings, component: str, follow: bool, lines: int) -> None:
    """Print the log of COMPONENT (see `dicomflow status` for the names)."""
    from dicomflow.stack.components import StackError

    try:
        comp = _stack(settings).component(component)
    except StackError as exc:
        raise CliError(str(exc)) from None
    if not comp.log_file.exists():
        raise CliError(f"{component} has no log yet ({comp.log_file})")
    cmd = ["tail", "-n", str(lines)] + (["-F"] if follow else []) + [str(comp.log_file)]
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(cmd, check=False)


# --- projects --------------------------------------------------------------------------------


@main.group()
def project() -> None:
    """Create and list projects (a project is the called AE title of a sender)."""


def _projects(settings: Settings) -> ProjectStore:
    from dicomflow.db.projects import ProjectStore
    from dicomflow.db.session import make_engine

    return ProjectStore(make_engine(settings.platform_db_url))


@project.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the project is for.")
@pass_settings
def project_create(settings: Settings, name: str, description: str) -> None:
    """Create project NAME (at most 16 characters: lowercase letters, digits, '-')."""
    from sqlalchemy.exc import OperationalError

    from dicomflow.db.projects import InvalidNameError

    try:
        created = _projects(settings).create_project(name, description)
    except InvalidNameError as exc:
        raise CliError(str(exc)) from None
    except OperationalError as exc:
        raise CliError(
            f"the platform database is not reachable (is `dicomflow up` done?): {exc.orig}"
        ) from None
    click.echo(f"project {name} created" if created else f"project {name} already exists")


@project.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def project_list(settings: Settings, as_json: bool) -> None:
    """List the projects."""
    rows = _projects(settings).all()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": p.name,
                        "description": p.description,
                        "created_at": p.created_at.isoformat(),
                        "datasets": p.datasets,
                    }
                    for p in rows
                ],
                indent=2,
            )
        )
        return
    for p in rows:
        click.echo(f"{p.name:<17} {p.datasets:>4} datasets  {p.description}")


main.add_command(batches)
main.add_command(series_group)
main.add_command(index_group)


# --- import ----------------------------------------------------------------------------------


class _ProgressBar:
    """Adapts the importer's progress to a click progress bar (bytes of input)."""

    def __init__(self, label: str = "importing") -> None:
        self._label = label
        self._bar: contextlib.ExitStack | None = None
        self._advance: Callable[[int], None] | None = None

    def start(self, total_bytes: int) -> None:
        stack = contextlib.ExitStack()
        bar = stack.enter_context(
            click.progressbar(
                length=max(total_bytes, 1),
                label=self._label,
                file=sys.stderr,
                show_pos=False,
                show_percent=True,
                show_eta=True,
            )
        )
        self._bar, self._advance = stack, bar.update

    def advance(self, nbytes: int, name: str) -> None:
        if self._advance is not None:
            self._advance(nbytes)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


ReportT = TypeVar("ReportT", bound=PrintableReport)


def _run_import(
    settings: Settings,
    run: Callable[[AirflowClient, _ProgressBar | None], ReportT],
    *,
    label: str | None,
    no_progress: bool,
    as_json: bool,
) -> ReportT:
    """Run an import with a progress bar and print its report; user errors end the command."""
    from sqlalchemy.exc import OperationalError

    from dicomflow.airflow_api.client import AirflowClient
    from dicomflow.importer import ImportRefusedError

    bar = None if no_progress or as_json else _ProgressBar(*([label] if label else []))
    try:
        with AirflowClient.from_settings(settings) as client:
            report = run(client, bar)
    except ImportRefusedError as exc:
        raise CliError(str(exc)) from None
    except OperationalError as exc:
        raise CliError(
            f"the platform database is not reachable (is `dicomflow up` done?): {exc.orig}"
        ) from None
    finally:
        if bar is not None:
            bar.close()
    echo_report(report, as_json)
    return report


@main.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--project", required=True, help="An existing project.")
@click.option("--dataset", required=True, help="Dataset name (an AE title); created if new.")
@click.option(
    "--extension",
    default=".dcm",
    show_default=True,
    help="Only files with this extension; '' detects DICOM by content, whatever the name.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@pass_settings
def import_command(
    settings: Settings,
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

    report = _run_import(
        settings,
        lambda client, bar: import_paths(
            settings, paths, project, dataset, extension=extension, trigger=client, progress=bar
        ),
        label=None,
        no_progress=no_progress,
        as_json=as_json,
    )
    if report.outcome is ImportOutcome.FAILED:
        sys.exit(1)


@main.command("import-nifti")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--project", required=True, help="An existing project.")
@click.option("--dataset", required=True, help="Dataset name (an AE title); created if new.")
@click.option(
    "--modality",
    type=click.Choice(["MR", "CT"], case_sensitive=False),
    default="MR",
    show_default=True,
    help="Modality of volumes that no tag (0008|0060) or nnU-Net channel name gives.",
)
@click.option(
    "--unknown-labels",
    type=click.Choice(["error", "segment"]),
    default="error",
    show_default=True,
    help="Label values not described: fail the case, or one segment 'unknown (label N)' each.",
)
@click.option(
    "--4d",
    "four_d",
    type=click.Choice(["split", "refuse"]),
    default="split",
    show_default=True,
    help="4D volumes: one series per volume, or fail the case.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@pass_settings
def import_nifti_command(
    settings: Settings,
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
    from dicomflow.nifti import FourDPolicy, Modality, NiftiImportOptions, UnknownLabelPolicy

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


@main.group()
def dashboards() -> None:
    """OpenSearch Dashboards: the saved objects that chart the index."""


@dashboards.command("import")
@click.option("--url", default=None, help="Dashboards URL (default: index.dashboards_url).")
@pass_settings
def dashboards_import(settings: Settings, url: str | None) -> None:
    """Load the index pattern, visualizations and dashboard in config/opensearch/."""
    from dicomflow.index.dashboards import DashboardsError, import_dashboards

    target = url or settings.index.dashboards_url
    if not target:
        raise CliError(
            "no Dashboards URL: pass --url or set index.dashboards_url "
            "(DICOMFLOW_INDEX__DASHBOARDS_URL)"
        )
    idx = settings.index
    try:
        count = import_dashboards(
            target,
            idx.opensearch_username,
            idx.opensearch_password,
            verify=idx.opensearch_verify_certs,
        )
    except DashboardsError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"imported {count} saved objects into {target}")


# --- configuration ---------------------------------------------------------------------------


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Print the effective configuration (secrets masked)."""
    settings = _settings(ctx)
    data = json.loads(settings.model_dump_json())
    for section, key in (
        (None, "admin_password"),
        ("postgres", "password"),
        ("pacs", "password"),
        ("s3", "secret_key"),
        ("index", "opensearch_password"),
    ):
        node = data if section is None else data[section]
        if node.get(key):
            node[key] = "********"
    click.echo(json.dumps(data, indent=2))


@config.command("docs")
def config_docs() -> None:
    """Print the configuration keys as a Markdown table (for the README)."""
    click.echo("| key | default | meaning |")
    click.echo("|---|---|---|")
    for key, default, meaning in settings_table():
        click.echo(f"| `{key}` | `{default}` | {meaning} |")


if __name__ == "__main__":
    main()
