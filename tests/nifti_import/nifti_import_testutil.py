"""Test data of NIfTI imports (small volumes made with nibabel) and waits on the real stack."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dicomflow.storage.client import ObjectStore
from tests.nifti.nifti_testutil import (
    SEG_INFO,
    labels_for,
    make_affine,
    phantom,
    save_nifti,
    write_json,
)
from tests.stack_testutil import wait_processed

SHAPE = (32, 32, 8)


def good_case(folder: Path, name: str, *, seed: int) -> None:
    """A volume ``<name>.nii.gz`` and its label map ``<name>_seg.nii.gz`` (labels 1, 2)."""
    folder.mkdir(parents=True, exist_ok=True)
    affine = make_affine()
    save_nifti(folder / f"{name}.nii.gz", phantom(SHAPE, seed=seed), affine)
    save_nifti(folder / f"{name}_seg.nii.gz", labels_for(SHAPE), affine)


def basic_folder(
    folder: Path, names: list[str], *, seed: int, meta: dict[str, Any] | None = None
) -> Path:
    """A basic-layout folder: the cases, ``seg_info.json`` and ``meta_data.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, name in enumerate(names):
        good_case(folder, name, seed=seed + n)
    write_json(folder / "seg_info.json", SEG_INFO)
    write_json(
        folder / "meta_data.json",
        {"global_tags": {"0008|0060": "CT"}} if meta is None else meta,
    )
    return folder


def coloured_pixels(store: ObjectStore, project: str, key: str) -> int:
    """Pixels of a stored PNG that are clearly not gray (segments drawn in colour)."""
    image = Image.open(io.BytesIO(store.get_bytes(project, key)))
    rgb = np.asarray(image.convert("RGB")).astype(int)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).sum())


def cases_by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The report's cases by ``<source>: <case>`` (JSON form)."""
    return {f"{c['source']}: {c['case_id']}": c for c in json.loads(json.dumps(report["cases"]))}


def assert_processed(settings: Any, report: dict[str, Any], project: str) -> dict[str, Any]:
    """Every batch was processed, and each imported case is in PACS, index and thumbnails.

    Returns the index documents by series UID.
    """
    from dicomflow.index import open_index
    from dicomflow.pacs.client import DicomWebClient
    from dicomflow.storage.keys import thumbnail_key

    dicom = report["dicom"]
    wait_processed(settings, dicom["batches"])
    studies = {s["series_instance_uid"]: s["study_instance_uid"] for s in dicom["series"]}
    store = ObjectStore.from_settings(settings)
    index = open_index(settings)
    docs: dict[str, Any] = {}
    try:
        with DicomWebClient.from_settings(settings) as pacs:
            for case in report["cases"]:
                if not case["ok"]:
                    continue
                (image_uid,) = case["series"]
                seg_uid = case["seg_series"]
                assert len(pacs.series_instances(studies[image_uid], image_uid)) == SHAPE[2]
                assert len(pacs.series_instances(studies[seg_uid], seg_uid)) == 1
                for uid in (image_uid, seg_uid):
                    doc = index.get(project, uid)
                    assert doc is not None, (case["case_id"], uid)
                    docs[uid] = doc
                assert docs[seg_uid]["00080060 Modality_keyword"] == "SEG"
                assert docs[seg_uid]["thumbnail_key"] == thumbnail_key(seg_uid)
                # The segments, in colour, over the image (a placeholder would be gray).
                assert coloured_pixels(store, project, thumbnail_key(seg_uid)) > 20
    finally:
        index.close()
    return docs
