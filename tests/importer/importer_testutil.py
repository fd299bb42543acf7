"""Test data for imports: pydicom's files, synthetic instances, archives good and bad."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from tests.dicomfiles import pydicom_file


def new_series(
    folder: Path,
    count: int,
    *,
    name: str = "CT_small.dcm",
    suffix: str = ".dcm",
    description: str = "import test",
) -> tuple[str, list[Path]]:
    """``count`` instances of one new series (fresh UIDs) made from a pydicom file."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid = generate_uid(), generate_uid()
    out = []
    for number in range(count):
        ds = pydicom.dcmread(pydicom_file(name))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription = description
        ds.InstanceNumber = number + 1
        path = folder / f"im{number:03d}{suffix}"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return series_uid, out


def bad_uid_file(path: Path) -> Path:
    """A DICOM file whose Series Instance UID is malformed."""
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = "1.2.abc.3"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def unreadable_dicom(path: Path) -> Path:
    """A file with the DICM prefix whose data set is garbage."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + b"\x07" * 300)
    return path


def make_zip(path: Path, members: dict[str, Path | bytes]) -> Path:
    """A zip with the given entry names (bytes or files)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            if isinstance(content, Path):
                archive.write(content, name)
            else:
                archive.writestr(name, content)
    return path


def truncated_zip(path: Path, members: dict[str, Path | bytes], keep: int) -> Path:
    """A zip of ``members`` cut after ``keep`` bytes, as a broken upload or copy is.

    Its central directory (at the end) is lost, so no reader can open it.
    """
    whole = make_zip(path.with_name(f"whole-{path.name}"), members)
    path.write_bytes(whole.read_bytes()[:keep])
    whole.unlink()
    return path


def copy_tree(files: list[Path], folder: Path) -> list[Path]:
    """Copies of files in a folder."""
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(f, folder / f.name)) for f in files]
