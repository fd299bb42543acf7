"""Helpers shared by the receiver tests: test files, byte comparison, crafted instances."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomflow.dicom.uids import uid_problem
from receiver.app import Receiver
from tests.intake_testutil import admission_for

if TYPE_CHECKING:
    from dicomflow.config import Settings
    from dicomflow.db.projects import ProjectStore
    from dicomflow.spool.store import Spool

REPO = Path(__file__).resolve().parents[2]

#: pydicom's files, one or more per transfer syntax (asked for by name: no downloads).
PYDICOM_FILES = (
    "CT_small.dcm",  # Explicit VR Little Endian
    "MR_small_implicit.dcm",  # Implicit VR Little Endian
    "MR_small_bigendian.dcm",  # Explicit VR Big Endian
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
    "JPEG2000.dcm",  # JPEG 2000
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG Baseline
    "JPEG-LL.dcm",  # JPEG Lossless SV1
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS
    "MR_small_RLE.dcm",  # RLE Lossless
    "rtplan.dcm",
    "rtdose.dcm",
)


@contextmanager
def running_receiver(
    spool: Spool, projects: ProjectStore, patch: pytest.MonkeyPatch
) -> Iterator[Receiver]:
    """A receiver in this process on a free port (no outbox), stopped at the end.

    Its incoming files live in the spool, as in the receiver's own process; once it has
    stopped none may be left there: an instance is in a batch or in the problem area, or it
    was never answered and is gone.
    """
    patch.setattr(tempfile, "tempdir", str(spool.incoming_dir))
    service = Receiver(spool, admission_for(spool, projects), port=0)
    service.start()
    try:
        yield service
    finally:
        service.stop()
    assert not list(spool.incoming_dir.iterdir()), "files left in the spool's incoming area"


def receiver_process_env(
    stack_env: dict[str, str], database: Settings, data_dir: Path, port: int
) -> dict[str, str]:
    """The environment of a receiver process of its own: its data directory and port.

    On the session's PostgreSQL (``database``). Restart recovery closes every open batch of
    its spool, so it must not share the session stack's.
    """
    return {
        **stack_env,
        "DICOMFLOW_DATA_DIR": str(data_dir),
        "DICOMFLOW_RECEIVER__PORT": str(port),
        "DICOMFLOW_POSTGRES__PASSWORD": database.postgres.password,
        "DICOMFLOW_ADMIN_PASSWORD": database.admin_password,
    }


def stop_receiver_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop it as the stack does (SIGTERM), killing it if it does not end in 15 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def start_receiver_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m receiver`` with ``env``, its output appended to ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "receiver"],
        cwd=REPO,
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Wait until the receiver process ``proc`` accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "receiver exited"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError("receiver did not start listening")


def has_part10_header(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(128)
        return fh.read(4) == b"DICM"


def sample_files() -> list[Path]:
    """pydicom's files above plus every Part 10 file of pydicom-data (a test dependency)."""
    # The pydicom-data distribution installs its files as the package ``data_store``.
    import data_store

    files = [Path(str(get_testdata_file(name))) for name in PYDICOM_FILES]
    extra = sorted(Path(data_store.__file__).parent.rglob("*.dcm"))
    # A file with a malformed UID (pydicom-data's bad_sequence.dcm) belongs to the
    # bad-instance tests. Several files are encodings of one instance (same SOP Instance UID).
    return [
        path
        for path in files + [p for p in extra if has_part10_header(p)]
        if uid_problem(sop_instance_uid(path), "SOPInstanceUID") is None
    ]


def dataset_bytes(path: Path) -> bytes:
    """The bytes after the file meta information (group 0002, always Explicit VR LE)."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM", f"{path} is not a Part 10 file"
    pos = 132
    while pos + 8 <= len(data):
        group, _elem = struct.unpack("<HH", data[pos : pos + 4])
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length = struct.unpack("<L", data[pos + 8 : pos + 12])[0]
            pos += 12 + length
        else:
            length = struct.unpack("<H", data[pos + 6 : pos + 8])[0]
            pos += 8 + length
    return data[pos:]


def sop_instance_uid(path: Path) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    return str(ds.SOPInstanceUID)


def good_dataset() -> Dataset:
    """A small, valid Secondary Capture-like dataset with fresh UIDs."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    return ds


def bad_datasets() -> dict[str, tuple[Dataset, str]]:
    """Crafted bad instances: name -> (dataset, words the rejection reason must contain)."""
    missing = good_dataset()
    del missing.SeriesInstanceUID
    empty = good_dataset()
    empty.StudyInstanceUID = ""
    too_long = good_dataset()
    too_long.SeriesInstanceUID = "1." + "2" * 63
    leading_zero = good_dataset()
    leading_zero.StudyInstanceUID = "1.2.03"
    return {
        "missing series": (missing, "SeriesInstanceUID is missing"),
        "empty study": (empty, "StudyInstanceUID is empty"),
        "65 chars": (too_long, "65 characters"),
        "leading zero": (leading_zero, "not a valid UID"),
    }


def count_served(patch: pytest.MonkeyPatch, owner: type, method: str) -> list[int]:
    """Count the calls of ``owner.method`` that return true from now on (one element)."""
    count = [0]
    original = getattr(owner, method)

    def counting(self: object, *args: Any) -> bool:
        done = bool(original(self, *args))
        count[0] += done
        return done

    patch.setattr(owner, method, counting)
    return count
