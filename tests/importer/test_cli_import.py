"""``dicomflow import`` as an administrator runs it: a subprocess on the test stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.importer.conftest import PROJECT
from tests.importer.importer_testutil import make_zip, new_series
from tests.stack_testutil import wait_processed

CLI = [str(Path(sys.executable).with_name("dicomflow"))]


def test_cli_imports_files_folders_and_zips_and_each_batch_is_processed(
    stack_env: dict[str, str], airflow: Any, dispatcher: Any, projects: Any, tmp_path: Path
) -> None:
    _, loose = new_series(tmp_path / "a", 2)
    new_series(tmp_path / "folder" / "ct", 2)
    _, zipped = new_series(tmp_path / "z", 2)
    archive = make_zip(tmp_path / "z.zip", {f"x/{f.name}": f for f in zipped})
    args = [*CLI, "import", str(loose[0]), str(loose[1]), str(tmp_path / "folder"), str(archive)]
    done = subprocess.run(
        [*args, "--project", PROJECT, "--dataset", "cli", "--json"],
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["imported"] == 6 and report["outcome"] == "imported"
    # Each batch is handed over by the dispatcher and processed.
    wait_processed(airflow.settings, report["batches"])

    # The human form: a progress bar on stderr, the report on stdout; a failure exits 1.
    broken = tmp_path / "broken.zip"
    broken.write_bytes(archive.read_bytes()[:100])
    done = subprocess.run(
        [*CLI, "import", str(broken), "--project", PROJECT, "--dataset", "cli"],
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "FAILED broken.zip" in done.stdout and "corrupt archive" in done.stdout
    assert "importing" in done.stderr

    unknown = subprocess.run(
        [*CLI, "import", str(loose[0]), "--project", "nope", "--dataset", "cli"],
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 1 and "project 'nope' does not exist" in unknown.stderr
