"""DICOM test data shared by the test folders: pydicom's files, series made from them."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid


def pydicom_file(name: str) -> Path:
    """Path of a file shipped with pydicom (asked by name: no download attempts)."""
    found = get_testdata_file(name)
    assert found is not None, name
    return Path(str(found))


def edited_instance(name: str, **changes: object) -> Dataset:
    """A pydicom file (by name) with a new SOP Instance UID and ``changes`` applied.

    ``changes`` maps keywords to values; ``None`` deletes the element, to see what a file
    without it does. The new UID keeps a test's instances apart from every other's.
    """
    ds = pydicom.dcmread(pydicom_file(name))
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def write_ct_series(
    folder: Path,
    numbers: Sequence[int],
    *,
    series_uid: str | None = None,
    study_uid: str | None = None,
    edit: Callable[[Dataset, int], None] | None = None,
) -> list[Path]:
    """Write copies of CT_small.dcm into ``folder`` as one series numbered ``numbers``."""
    source = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in numbers:
        ds = copy.deepcopy(source)
        uid = generate_uid()
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = study_uid
        ds.InstanceNumber = number
        ds.ImagePositionPatient = [-158.135803, -179.035797, round(-75.699997 + 5.0 * number, 4)]
        if edit is not None:
            edit(ds, number)
        path = folder / f"{number:04d}-{uid}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def fresh_copy(source: str | Path, folder: Path) -> Path:
    """A copy of a pydicom file (by name) or any DICOM file with new Study/Series/SOP UIDs.

    Tests share one PACS and one index per session: fresh UIDs keep them from seeing each
    other's instances. Files without file meta (a few of pydicom's) get one, as a receiver's
    stored instances have.
    """
    path = pydicom_file(source) if isinstance(source, str) else source
    ds = pydicom.dcmread(path, force=True)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(target, enforce_file_format=True)
    return target
