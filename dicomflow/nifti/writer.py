"""Fast writing of single-frame instances that share most of their header.

Writing a slice with :func:`pydicom.dcmwrite` re-encodes every element of the
header, which costs more than the pixel data for a 512 x 512 slice. The slices
of a series differ in a handful of elements only, so the shared elements are
encoded once and each file is assembled from those bytes and the few per-slice
elements. The output is byte-identical to ``dcmwrite(..., enforce_file_format=True)``
in Explicit VR Little Endian (a test checks this).
"""

from __future__ import annotations

from pathlib import Path

from pydicom.charset import convert_encodings
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.tag import BaseTag
from pydicom.uid import UID, ExplicitVRLittleEndian

__all__ = ["SharedHeaderWriter"]

_PREAMBLE = b"\x00" * 128 + b"DICM"


def _buffer() -> DicomBytesIO:
    fp = DicomBytesIO()
    fp.is_implicit_VR = False
    fp.is_little_endian = True
    return fp


class SharedHeaderWriter:
    """Writes Explicit VR Little Endian files from a shared header plus per-file elements.

    Parameters
    ----------
    shared : pydicom.dataset.Dataset
        Elements common to every file (not modified).

    Notes
    -----
    Per-file elements must not also be in ``shared``; they may have any tag,
    and are merged into tag order.
    """

    def __init__(self, shared: Dataset) -> None:
        charset = shared.get("SpecificCharacterSet", None)
        self._encodings = convert_encodings(charset)
        self._shared: list[tuple[BaseTag, bytes]] = [
            (elem.tag, self._encode(elem)) for elem in shared
        ]
        self._tags = {tag for tag, _ in self._shared}

    def _encode(self, elem: DataElement) -> bytes:
        fp = _buffer()
        write_data_element(fp, elem, self._encodings)
        return bytes(fp.getvalue())

    def write(self, path: Path, sop_class_uid: str, sop_instance_uid: str, own: Dataset) -> None:
        """Write one file.

        Parameters
        ----------
        path : pathlib.Path
            Destination (overwritten if it exists).
        sop_class_uid, sop_instance_uid : str
            For the file meta information (the dataset itself holds them too).
        own : pydicom.dataset.Dataset
            The file's own elements (e.g. SOP Instance UID, position, Pixel Data).
        """
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(sop_class_uid)
        meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta_fp = _buffer()
        write_file_meta_info(meta_fp, meta, enforce_standard=True)
        items = list(self._shared)
        for elem in own:
            if elem.tag in self._tags:
                raise ValueError(f"{elem.tag} is both shared and per-file")
            items.append((elem.tag, self._encode(elem)))
        items.sort(key=lambda item: item[0])
        with path.open("wb") as handle:
            handle.write(_PREAMBLE)
            handle.write(meta_fp.getvalue())
            for _, data in items:
                handle.write(data)
