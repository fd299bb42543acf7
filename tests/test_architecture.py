"""The architecture as it runs: what a door's process loads, and the import contracts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Modules a receiver process must never load: it writes the spool and nothing else, so it
#: keeps taking data while any of these services is away, and stays small.
NOT_IN_THE_RECEIVER = (
    "dicomflow.pipeline",
    "dicomflow.platform",
    "dicomflow.index",
    "dicomflow.pacs",
    "dicomflow.storage",
    "dicomflow.airflow_api",
    "dicomflow.thumbnails",
    "dicomflow.validation",
    "dicomflow.nifti",
    "minio",
    "opensearchpy",
    "httpx",
    "airflow",
)


def _loaded_after(code: str) -> set[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_a_receiver_process_loads_no_pipeline_index_or_service_client() -> None:
    loaded = _loaded_after(
        "import receiver.__main__\n"
        "from dicomflow.config import load_settings\n"
        "from receiver.app import Receiver\n"
    )
    wrong = sorted(
        m for m in loaded for top in NOT_IN_THE_RECEIVER if m == top or m.startswith(top + ".")
    )
    assert wrong == []


def test_the_cli_help_loads_only_click() -> None:
    loaded = _loaded_after("from dicomflow.cli import main")
    heavy = ("pydicom", "sqlalchemy", "pydantic", "httpx", "numpy", "minio", "nibabel")
    assert [m for m in heavy if m in loaded] == []


def test_a_command_loads_only_its_own_module_of_the_cli() -> None:
    loaded = _loaded_after(
        "import click\n"
        "from dicomflow.cli import main\n"
        "main.get_command(click.Context(main), 'status')"
    )
    cli_modules = sorted(m for m in loaded if m.startswith("dicomflow.cli."))
    assert cli_modules == ["dicomflow.cli.options", "dicomflow.cli.stack"]


def test_every_command_of_the_cli_modules_is_listed() -> None:
    import importlib
    import pkgutil

    import click

    import dicomflow.cli
    from dicomflow.cli import COMMAND_MODULES, main

    defined = {}
    for info in pkgutil.iter_modules(dicomflow.cli.__path__):
        if info.name == "__main__":
            continue
        module = importlib.import_module(f"dicomflow.cli.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            defined[command.name] = info.name
    assert defined == COMMAND_MODULES
    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None and command.name == name


def test_the_import_contracts_hold() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
