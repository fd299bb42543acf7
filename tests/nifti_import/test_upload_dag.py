"""The DAG import-niftis-from-data-upload through Airflow's REST API, on the whole real stack."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from dicomflow.airflow_api.client import AirflowClient
from dicomflow.config import Settings
from dicomflow.importer.nifti import NIFTI_UPLOAD_IMPORT_DAG_ID, read_nifti_report
from dicomflow.importer.uploads import upload_area
from dicomflow.storage.client import ObjectStore
from tests.importer.importer_testutil import make_zip
from tests.nifti.nifti_testutil import (
    SEG_INFO,
    labels_for,
    make_affine,
    phantom,
    save_nifti,
    write_json,
)
from tests.nifti_import.conftest import PROJECT
from tests.nifti_import.nifti_import_testutil import (
    SHAPE,
    assert_processed,
    basic_folder,
    good_case,
)
from tests.stack_testutil import upload_files, wait_dag_run


def _zip_tree(path: Path, root: Path) -> Path:
    return make_zip(
        path, {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
    )


def _run(settings: Settings, upload_id: str, **params: Any) -> tuple[str, dict[str, Any], float]:
    conf = {"project": PROJECT, "uploads": [upload_id], **params}
    run_id = f"test-nifti-{upload_id}"
    started = time.monotonic()
    with AirflowClient.from_settings(settings) as client:
        client.trigger_dag_run(NIFTI_UPLOAD_IMPORT_DAG_ID, run_id, conf)
        state = wait_dag_run(client, NIFTI_UPLOAD_IMPORT_DAG_ID, run_id)["state"]
    report = read_nifti_report(ObjectStore.from_settings(settings), PROJECT, run_id)
    assert report is not None, state
    return state, report.as_dict(), time.monotonic() - started


def test_uploaded_zip_is_converted_imported_processed_and_deleted_on_request(
    stack: Settings, tmp_path: Path
) -> None:
    # No modality tag anywhere: the run's Param "modality" decides.
    basic_folder(tmp_path / "tree" / "prostate", ["P01", "P02"], seed=40, meta={})
    archive = _zip_tree(tmp_path / "prostate.zip", tmp_path / "tree")
    upload_id = upload_files(stack, PROJECT, {"prostate.zip": archive})

    state, report, took = _run(
        stack, upload_id, dataset="dagzip", modality="CT", delete_upload=True
    )
    assert state == "success" and report["outcome"] == "imported", report["failures"]
    assert [(c["source"], c["case_id"]) for c in report["cases"]] == [
        (f"{upload_id}/prostate.zip!prostate", "P01"),
        (f"{upload_id}/prostate.zip!prostate", "P02"),
    ]
    assert report["options"]["default modality"] == "CT"
    started = time.monotonic()
    docs = assert_processed(stack, report, PROJECT)
    print(
        f"\nDAG upload import, 2 cases: import run {took:.1f} s, "
        f"then processing {time.monotonic() - started:.1f} s"
    )
    images = [c["series"][0] for c in report["cases"]]
    assert {docs[uid]["00080060 Modality_keyword"] for uid in images} == {"CT"}
    # Every case imported and deletion asked for: the upload is gone.
    assert upload_id not in {e.upload_id for e in upload_area(stack).entries(PROJECT)}


def _mixed_upload(tmp: Path) -> dict[str, Path]:
    """A zip of good and bad folders and cases, plus a loose folder of one good case."""
    tree = tmp / "tree"
    affine = make_affine()
    basic_folder(tree / "good", ["good"], seed=50)

    cases = basic_folder(tree / "cases", ["fine"], seed=51, meta={})
    save_nifti(cases / "shifted.nii.gz", phantom(SHAPE, seed=52), affine)
    save_nifti(cases / "shifted_seg.nii.gz", labels_for(SHAPE), make_affine(origin=(0, 0, 0)))
    save_nifti(cases / "extra.nii.gz", phantom(SHAPE, seed=53), affine)
    save_nifti(cases / "extra_seg.nii.gz", labels_for(SHAPE, (1, 7)), affine)
    sheared = affine.copy()
    sheared[1, 2] = 0.4
    save_nifti(cases / "sheared.nii.gz", phantom(SHAPE, seed=54), sheared)
    save_nifti(cases / "fourd.nii.gz", np.stack([phantom(SHAPE, seed=55)] * 2, axis=-1), affine)
    save_nifti(cases / "baddate.nii.gz", phantom(SHAPE, seed=56), affine)
    save_nifti(cases / "badkey.nii.gz", phantom(SHAPE, seed=57), affine)
    write_json(
        cases / "meta_data.json",
        {
            "series_tags": {
                "baddate.nii.gz": {"0008|0020": "2024-01-01"},
                "badkey.nii.gz": {"0008|zzzz": "x"},
            }
        },
    )

    malformed = tree / "malformed"
    malformed.mkdir()
    save_nifti(malformed / "m.nii.gz", phantom(SHAPE, seed=58), affine)
    (malformed / "meta_data.json").write_text('{"global_tags": {"0008|0060": "CT",}}')
    (tree / "nnunet" / "imagesTr").mkdir(parents=True)
    save_nifti(tree / "nnunet" / "imagesTr" / "x_0000.nii.gz", phantom(SHAPE), affine)
    good_case(tree / "noseginfo", "n", seed=59)

    loose = tmp / "loose"
    good_case(loose, "b", seed=60)
    write_json(loose / "seg_info.json", SEG_INFO)
    archive = _zip_tree(tmp / "mixed.zip", tree)
    return {"mixed.zip": archive} | {f"loose/{p.name}": p for p in sorted(loose.iterdir())}


def test_an_upload_mixing_good_and_bad_cases_imports_the_good_and_names_the_bad(
    stack: Settings, tmp_path: Path
) -> None:
    upload_id = upload_files(stack, PROJECT, _mixed_upload(tmp_path))
    state, report, took = _run(
        stack, upload_id, dataset="dagmixed", four_d="refuse", delete_upload=True
    )
    # The bad cases fail the run (visible in Airflow), after the good ones were imported.
    assert state == "failed" and report["outcome"] == "partial"
    zipped = f"{upload_id}/mixed.zip!"
    cases = {f"{c['source']}: {c['case_id']}": c for c in report["cases"]}
    assert sorted(k for k, c in cases.items() if c["ok"]) == sorted(
        [f"{zipped}good: good", f"{zipped}cases: fine", f"{upload_id}/loose: b"]
    )
    failed = {k: (c["error_type"], c["reason"]) for k, c in cases.items() if not c["ok"]}
    assert {k: t for k, (t, _) in failed.items()} == {
        f"{zipped}cases: shifted": "GridMismatchError",
        f"{zipped}cases: extra": "UnknownLabelError",
        f"{zipped}cases: sheared": "ShearedAffineError",
        f"{zipped}cases: fourd": "FourDimensionalVolumeError",
        f"{zipped}cases: baddate": "TagValueError",
        f"{zipped}cases: badkey": "TagKeyError",
    }
    # Reasons name the files as the user uploaded them, not the worker's scratch paths.
    assert f"{zipped}cases/shifted_seg.nii.gz" in failed[f"{zipped}cases: shifted"][1]
    assert f"{zipped}cases/meta_data.json, line" in failed[f"{zipped}cases: baddate"][1]
    assert all(str(stack.imports_dir) not in reason for _, reason in failed.values())
    sources = {s["name"]: s["error_type"] for s in report["sources"] if s["error"]}
    assert sources == {
        f"{zipped}malformed": "MalformedJsonError",
        f"{zipped}nnunet": "MissingFileError",
        f"{zipped}noseginfo": "MissingFileError",
    }
    assert any("dataset.json" in f for f in report["failures"])
    started = time.monotonic()
    docs = assert_processed(stack, report, PROJECT)
    print(
        f"\nDAG mixed upload, 3 good of 12: import run {took:.1f} s, "
        f"then processing {time.monotonic() - started:.1f} s"
    )
    loose_image = cases[f"{upload_id}/loose: b"]["series"][0]
    assert docs[loose_image]["00080060 Modality_keyword"] == "MR"  # the Param's default
    # Not every case imported: the upload stays for the user to fix, deletion asked or not.
    assert upload_id in {e.upload_id for e in upload_area(stack).entries(PROJECT)}
