"""Storing by C-STORE (``pacs.protocol: dimse``) into the session's real Orthanc, configured as
the stack configures its PACS, with its DICOM port open to the platform's AE title."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import JPEGLossless

from dicomflow.config import ConfigError, Settings, load_settings
from dicomflow.pacs.client import DicomWebClient, PacsUnavailableError
from dicomflow.pacs.dimse import DimseStoreClient
from dicomflow.pacs.sending import store_instances
from dicomflow.pipeline import steps
from dicomflow.platform import Platform
from dicomflow.stack.isolated import free_port, stack_environment
from tests.dicomfiles import fresh_copy, pydicom_file
from tests.pipeline.conftest import spool_batch
from tests.receiver.compressed_files import compressed_files
from tests.receiver.receiver_helpers import dataset_bytes


def _environment(data_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
    env.update(stack_environment(data_dir))
    env.update({f"DICOMFLOW_PACS__{k.upper()}": v for k, v in settings.items()})
    return env


def _with_pacs(settings: Settings, **pacs: object) -> Settings:
    return settings.replace(pacs=settings.pacs.replace(**pacs))


@pytest.fixture
def dimse_pacs(orthanc: Settings) -> Settings:
    """The session's settings with the store going by C-STORE to the session's Orthanc."""
    assert orthanc.pacs.dicom_port, "the session stack opens Orthanc's DICOM port"
    return _with_pacs(orthanc, protocol="dimse")


def _held(pacs: DicomWebClient, path: Path, into: Path) -> Path:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    held = pacs.retrieve_instance(
        str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
    )
    into.write_bytes(held)
    return into


@pytest.fixture
def bit_preserving_scp(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """dcmtk's storescp writing each data set exactly as it arrived (``+B``): port, folder."""
    folder, port = tmp_path / "received", free_port()
    folder.mkdir()
    proc = subprocess.Popen(
        ["storescp", "+B", "+xa", "-pm", "-od", str(folder), "-aet", "SCP", str(port)],
        env={**os.environ, "TCP_NODELAY": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "storescp did not start"
                time.sleep(0.05)
        yield port, folder
    finally:
        proc.terminate()
        proc.wait(10)


def _quirky_files(folder: Path) -> list[Path]:
    """Files whose encoding a re-encoding sender would change: undefined-length sequences and
    items, odd padding, a deflated data set, big endian, encapsulated frames."""
    names = ("rtstruct.dcm", "JPEG2000.dcm", "image_dfl.dcm", "waveform_ecg.dcm", "US1_J2KR.dcm")
    return [fresh_copy(name, folder) for name in names] + [
        fresh_copy("MR_small_bigendian.dcm", folder)
    ]


def test_each_file_is_sent_byte_for_byte_in_its_own_transfer_syntax(
    bit_preserving_scp: tuple[int, Path], tmp_path: Path
) -> None:
    port, received = bit_preserving_scp
    compressed = compressed_files(tmp_path / "send")
    # storescp's "accept all" list lacks JPEG Lossless Process 14 (the PACS test has it).
    del compressed[JPEGLossless]
    files = [*compressed.values(), *_quirky_files(tmp_path / "quirky")]

    with DimseStoreClient("127.0.0.1", port, "SCP", "DICOMFLOW") as client:
        result = client.store(files)

    assert result.failed == {}
    assert len(result.stored) == len(files)
    by_uid = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
        for p in received.iterdir()
    }
    changed = []
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        got = by_uid[str(ds.SOPInstanceUID)]
        syntax = pydicom.dcmread(got, stop_before_pixels=True).file_meta.TransferSyntaxUID
        if syntax != ds.file_meta.TransferSyntaxUID:
            changed.append(f"{path.name}: arrived as {syntax}")
        elif dataset_bytes(got) != dataset_bytes(path):
            changed.append(f"{path.name}: other data set bytes")
    assert changed == [], "\n".join(changed)


def test_every_transfer_syntax_reaches_the_pacs_untranscoded(
    dimse_pacs: Settings, tmp_path: Path
) -> None:
    files = compressed_files(tmp_path / "send")

    with DicomWebClient.from_settings(dimse_pacs) as dicomweb:
        # Two associations share the files, as the store step sends them.
        settings = _with_pacs(dimse_pacs, dimse_associations=2)
        result = store_instances(settings, dicomweb, list(files.values()))

        assert result.failed == {}
        assert len(result.stored) == len(files)
        held = {
            syntax: pydicom.dcmread(
                _held(dicomweb, path, tmp_path / "held.dcm"), stop_before_pixels=True
            ).file_meta.TransferSyntaxUID
            for syntax, path in files.items()
        }
    assert held == {syntax: syntax for syntax in files}


def test_a_syntax_the_pacs_refuses_is_reported_and_the_rest_stored(
    dimse_pacs: Settings, tmp_path: Path
) -> None:
    good = fresh_copy("CT_small.dcm", tmp_path)
    odd = fresh_copy("MR_small.dcm", tmp_path)
    ds = pydicom.dcmread(odd)
    # A private transfer syntax: Orthanc accepts only the standard's (1.2.840.10008.1.*).
    ds.file_meta.TransferSyntaxUID = "1.3.6.1.4.1.5962.300.1"
    ds.save_as(odd, enforce_file_format=False)

    with DimseStoreClient.from_settings(dimse_pacs) as client:
        result = client.store([odd, good])

    good_uid = str(pydicom.dcmread(good, stop_before_pixels=True).SOPInstanceUID)
    assert result.stored == {good_uid}
    assert result.failed == {
        str(ds.SOPInstanceUID): "the PACS accepts no presentation context for SOP class "
        f"{ds.SOPClassUID} in transfer syntax 1.3.6.1.4.1.5962.300.1"
    }


def test_only_the_platforms_ae_title_may_store(dimse_pacs: Settings, tmp_path: Path) -> None:
    pacs = dimse_pacs.pacs
    stranger = DimseStoreClient(
        "127.0.0.1", pacs.dicom_port, pacs.ae_title, "STRANGER", attempts=1, timeout=10
    )
    with pytest.raises(PacsUnavailableError) as err:
        stranger.store([fresh_copy("CT_small.dcm", tmp_path)])

    message = str(err.value)
    assert f"{pacs.ae_title}@127.0.0.1:{pacs.dicom_port}" in message
    assert "association rejected (called AE DICOMFLOW-PACS, calling AE STRANGER)" in message


def test_the_store_step_by_c_store_skips_what_is_held_and_keeps_conflicts_aside(
    dimse_pacs: Settings, postgres: Settings, tmp_path: Path
) -> None:
    # postgres: the step maps the series it stored to their projects.
    files = [fresh_copy(name, tmp_path) for name in ("CT_small.dcm", "MR_small.dcm")]
    with Platform(dimse_pacs) as platform:
        first = steps.store_to_pacs(platform, spool_batch(dimse_pacs, files))
        again = steps.store_to_pacs(platform, spool_batch(dimse_pacs, files))
        other = tmp_path / "other.dcm"
        ds = pydicom.dcmread(files[0])
        ds.PatientName = "OTHER^BYTES"
        ds.save_as(other)
        conflict = steps.store_to_pacs(platform, spool_batch(dimse_pacs, [other]))

    assert (first["stored"], first["already_stored"], first["conflicts"]) == (2, 0, [])
    # Orthanc records how each instance came: by DICOM from our AE title, not by its REST API.
    uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files]
    assert [_arrival(dimse_pacs, uid) for uid in uids] == [
        ("DicomProtocol", dimse_pacs.pacs.calling_ae_title)
    ] * 2
    assert (again["stored"], again["already_stored"], again["conflicts"]) == (0, 2, [])
    assert conflict["stored"] == 0
    assert [c["sop_instance_uid"] for c in conflict["conflicts"]] == [str(ds.SOPInstanceUID)]


def _arrival(settings: Settings, sop_instance_uid: str) -> tuple[str, str]:
    """How the PACS received an instance: Orthanc's ``Origin`` and ``RemoteAET`` metadata."""
    pacs = settings.pacs
    with httpx.Client(base_url=pacs.orthanc_url, auth=(pacs.username, pacs.password)) as http:
        found = http.post(
            "/tools/lookup", content=sop_instance_uid, headers={"Content-Type": "text/plain"}
        )
        found.raise_for_status()
        (instance,) = [f["ID"] for f in found.json() if f["Type"] == "Instance"]
        meta = [
            http.get(f"/instances/{instance}/metadata/{name}") for name in ("Origin", "RemoteAET")
        ]
    return (meta[0].text, meta[1].text)


def test_c_store_without_a_dicom_port_is_refused_with_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ=_environment(tmp_path, protocol="dimse", dicom_port="0"))
    message = str(err.value)
    assert "pacs.protocol = 'dimse': C-STORE needs pacs.dicom_port, which is 0" in message
    assert "password" not in message


def test_an_unreachable_pacs_fails_clearly_after_retries(tmp_path: Path) -> None:
    client = DimseStoreClient(
        "127.0.0.1", free_port(), "PACS", "DICOMFLOW", attempts=2, backoff=0.05
    )
    with pytest.raises(PacsUnavailableError) as err:
        client.store([pydicom_file("CT_small.dcm")])
    assert "C-STORE of 1 instance(s) to the PACS at PACS@127.0.0.1:" in str(err.value)
    assert "after 2 attempts" in str(err.value)
