"""Compressed test files, one per compressed transfer syntax, as dcmtk senders transmit them.

dcmtk's senders re-encode what they parse: sequences get explicit lengths, encapsulated Pixel
Data the VR OB, and the trailing padding (FFFC,FFFC) is dropped. So that "the receiver keeps
the sender's bytes" can be checked against the files themselves, each copy gets fresh UIDs,
loses its padding and is written by dcmtk (``dcmconv``); what ``dcmsend`` or ``storescu`` then
puts on the wire is the file's data set byte for byte.
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import pydicom
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)

from tests.dicomfiles import pydicom_file

#: One file (pydicom's or pydicom-data's, by name) per compressed syntax; the first three are
#: the files of issue 23.
SOURCES = {
    JPEGLosslessSV1: "JPEG-LL.dcm",
    RLELossless: "SC_rgb_rle.dcm",
    JPEGLSLossless: "MR_small_jpeg_ls_lossless.dcm",
    JPEGBaseline8Bit: "SC_rgb_jpeg_dcmtk.dcm",
    JPEGExtended12Bit: "JPEG-lossy.dcm",
    JPEGLSNearLossless: "JPEGLSNearLossless_16.dcm",
    JPEG2000Lossless: "MR_small_jp2klossless.dcm",
    JPEG2000: "JPEG2000.dcm",
    DeflatedExplicitVRLittleEndian: "image_dfl.dcm",
}
#: No test file uses JPEG Lossless with another selection value than 1 (Process 14): dcmtk
#: makes one from this file.
PROCESS_14_SOURCE = "CT_small.dcm"
#: An uncompressed Explicit VR file sent along: it must stay as it is too.
EXPLICIT_SOURCE = "CT_small.dcm"

UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)


def _reidentified(name: str, target: Path) -> Path:
    """``name`` with new Study, Series and SOP Instance UIDs and no trailing padding."""
    ds = pydicom.dcmread(pydicom_file(name))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if 0xFFFCFFFC in ds:
        del ds[0xFFFCFFFC]
    ds.save_as(target, enforce_file_format=True)
    return target


def _dcmtk(*args: str) -> None:
    result = subprocess.run(list(args), capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)}: {result.stdout}{result.stderr}"


def compressed_files(folder: Path) -> dict[str, Path]:
    """Write the test files into ``folder``: transfer syntax UID -> file.

    Every compressed syntax of :data:`SOURCES`, JPEG Lossless Process 14 and Explicit VR
    Little Endian, each with its own new study, series and instance UIDs.
    """
    folder.mkdir(parents=True, exist_ok=True)
    work = folder / "pydicom"
    work.mkdir()
    files: dict[str, Path] = {}
    for syntax, name in SOURCES.items():
        source = _reidentified(name, work / name)
        target = folder / f"{UID(syntax).keyword}.dcm"
        if syntax == DeflatedExplicitVRLittleEndian:
            # dcmtk writes an odd-length deflated stream to a file but pads it to even length
            # on the network, as pydicom pads it in a file: pydicom's copy is what is sent.
            source.rename(target)
        else:
            _dcmtk("dcmconv", str(source), str(target))
        files[syntax] = target
    plain = _reidentified(PROCESS_14_SOURCE, work / "process14.dcm")
    files[JPEGLossless] = folder / f"{JPEGLossless.keyword}.dcm"
    _dcmtk("dcmcjpeg", "+el", str(plain), str(files[JPEGLossless]))
    files[ExplicitVRLittleEndian] = folder / f"{ExplicitVRLittleEndian.keyword}.dcm"
    _dcmtk(
        "dcmconv",
        str(_reidentified(EXPLICIT_SOURCE, work / "explicit.dcm")),
        str(files[ExplicitVRLittleEndian]),
    )
    for path in work.iterdir():
        path.unlink()
    work.rmdir()
    for syntax, path in files.items():
        assert transfer_syntax(path) == syntax, path
    return files


def transfer_syntax(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def compressed_syntaxes_of_the_test_data() -> set[str]:
    """Every transfer syntax but the three uncompressed ones among pydicom's and pydicom-data's
    Part 10 files (read from their folders: asking pydicom for "*" tries downloads)."""
    import data_store
    import pydicom.data

    folders = [Path(pydicom.data.__file__).parent, Path(data_store.__file__).parent]
    syntaxes = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deliberately odd files among them
        for folder in folders:
            for path in folder.rglob("*.dcm"):
                try:
                    syntax = transfer_syntax(path)
                except Exception:  # files without file meta or deliberately broken ones
                    continue
                if syntax not in UNCOMPRESSED:
                    syntaxes.add(syntax)
    return syntaxes
