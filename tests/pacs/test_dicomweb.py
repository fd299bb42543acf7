"""The DICOMweb client against a real Orthanc."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from dicomflow.config import Settings
from dicomflow.pacs.client import DicomWebClient, PacsUnavailableError
from tests.dicomfiles import fresh_copy, pydicom_file


@pytest.fixture
def pacs(orthanc: Settings) -> DicomWebClient:
    return DicomWebClient.from_settings(orthanc)


def test_store_query_and_retrieve_byte_identical(pacs: DicomWebClient, tmp_path: Path) -> None:
    files = [fresh_copy(n, tmp_path) for n in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm")]
    result = pacs.store(files)
    expected = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    assert result.stored == expected and result.failed == {}

    ct = pydicom.dcmread(files[0], stop_before_pixels=True)
    uids = pacs.series_instances(ct.StudyInstanceUID, ct.SeriesInstanceUID)
    assert uids == [ct.SOPInstanceUID]
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        held = pacs.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        # The dataset after the file meta is what the PACS must keep as sent.
        original = path.read_bytes()
        offset = 132 + 12 + int.from_bytes(original[140:144], "little")
        assert held.endswith(original[offset:])


def test_unknown_series_is_empty(pacs: DicomWebClient) -> None:
    assert pacs.series_instances("1.2.3.4", "1.2.3.4.5") == []


def test_wrong_credentials_are_refused(orthanc: Settings) -> None:
    with DicomWebClient(orthanc.pacs.base_url, "dicomflow", "wrong", attempts=1) as client:
        assert not client.ping()


def test_unreachable_pacs_fails_clearly_after_retries(tmp_path: Path) -> None:
    client = DicomWebClient("http://127.0.0.1:9/dicom-web", attempts=2, backoff=0.05)
    with pytest.raises(PacsUnavailableError) as err:
        client.store([pydicom_file("CT_small.dcm")])
    assert "http://127.0.0.1:9/dicom-web" in str(err.value)
    assert "after 2 attempts" in str(err.value)
