"""``dicomflow import-nifti`` as an administrator runs it: a subprocess on the test stack."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from dicomflow.config import Settings
from tests.importer.importer_testutil import make_zip
from tests.nifti.nifti_testutil import labels_for, make_affine, phantom, save_nifti
from tests.nifti_import.conftest import PROJECT
from tests.nifti_import.nifti_import_testutil import SHAPE, assert_processed, basic_folder

CLI = [str(Path(sys.executable).with_name("dicomflow"))]


def _import(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "import-nifti", *args, "--project", PROJECT],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_folder_and_zip_become_image_series_and_seg_in_pacs_index_and_thumbnails(
    stack: Settings, stack_env: dict[str, str], tmp_path: Path
) -> None:
    folder = basic_folder(tmp_path / "study", ["Case00"], seed=10)
    started = time.monotonic()
    done = _import(stack_env, str(folder), "--dataset", "clifolder", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["outcome"] == "imported" and report["kind"] == "nifti"
    assert [(c["source"], c["case_id"], c["ok"]) for c in report["cases"]] == [
        (str(folder), "Case00", True)
    ]
    assert report["dicom"]["imported"] == 8 + 1  # 8 slices and one SEG
    docs = assert_processed(stack, report, PROJECT)
    image_uid = report["cases"][0]["series"][0]
    assert docs[image_uid]["00080060 Modality_keyword"] == "CT"  # from meta_data.json
    assert docs[image_uid]["dataset"] == ["clifolder"]
    print(f"\nCLI folder import, 1 case, end to end: {time.monotonic() - started:.1f} s")

    # A zip of a folder holding the layout one level down; no modality tag: --modality.
    zipped = basic_folder(tmp_path / "z" / "data", ["Case01"], seed=20, meta={})
    archive = make_zip(
        tmp_path / "niftis.zip", {f"data/{p.name}": p for p in sorted(zipped.iterdir())}
    )
    started = time.monotonic()
    done = _import(stack_env, str(archive), "--dataset", "clizip", "--modality", "MR")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "converting and importing" in done.stderr  # the progress bar
    assert "ok     " + f"{archive}!data: Case01: 1 image series, SEG" in done.stdout
    assert ": IMPORTED" in done.stdout.splitlines()[0]
    # The human form has no UIDs of cases; ask the JSON form again: same files, same UIDs.
    again = _import(stack_env, str(archive), "--dataset", "clizip", "--json", "--no-progress")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    docs = assert_processed(stack, report, PROJECT)
    image_uid = report["cases"][0]["series"][0]
    assert docs[image_uid]["00080060 Modality_keyword"] == "MR"
    assert docs[image_uid]["instance_count"] == 8  # imported twice, still 8 instances
    print(f"CLI zip import (twice), 1 case, end to end: {time.monotonic() - started:.1f} s")


def test_bad_cases_are_named_and_exit_1_and_an_unknown_project_is_refused(
    stack: Settings, stack_env: dict[str, str], tmp_path: Path
) -> None:
    folder = basic_folder(tmp_path / "in", ["good"], seed=30)
    save_nifti(folder / "odd.nii.gz", phantom(SHAPE, seed=31), make_affine())
    save_nifti(folder / "odd_seg.nii.gz", labels_for(SHAPE, (1, 9)), make_affine())
    done = _import(stack_env, str(folder), "--dataset", "clibad", "--no-progress")
    assert done.returncode == 1
    assert f"FAILED {folder}: odd: UnknownLabelError" in done.stdout
    assert "label value(s) 9" in done.stdout and ": PARTIAL" in done.stdout
    assert f"ok     {folder}: good" in done.stdout

    lenient = _import(
        stack_env, str(folder), "--dataset", "clibad", "--unknown-labels", "segment", "--json"
    )
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert json.loads(lenient.stdout)["outcome"] == "imported"

    unknown = subprocess.run(
        [*CLI, "import-nifti", str(folder), "--project", "nope", "--dataset", "x"],
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 1 and "project 'nope' does not exist" in unknown.stderr
