"""Compressed data arrives as the sender compressed it, from dcmsend and from storescu.

For lossless compression and Deflate, dcmtk's senders propose the data's own syntax first with
the uncompressed ones after it in the same presentation context, to fall back on by
decompressing (dcmsend always; storescu with ``-xs``/``-xt``/``-xr``/``-xd`` ... ``+C``). A
receiver that picks by its own order of preference makes them decompress: the archive would
hold larger copies instead of what the modality sent.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pydicom
import pytest

from dicomflow.spool.store import Spool
from receiver.app import Receiver
from tests.receiver.compressed_files import (
    UNCOMPRESSED,
    compressed_files,
    compressed_syntaxes_of_the_test_data,
    transfer_syntax,
)
from tests.receiver.receiver_helpers import dataset_bytes, sop_instance_uid

NODELAY = {**os.environ, "TCP_NODELAY": "1"}
CONVERSION = re.compile(r"Converting transfer syntax: (.*) -> (.*)")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per compressed syntax of the test data, and one Explicit VR Little Endian."""
    made = compressed_files(tmp_path_factory.mktemp("compressed"))
    missing = compressed_syntaxes_of_the_test_data() - set(made)
    assert not missing, f"compressed syntaxes of the test data without a test file: {missing}"
    return made


def _send(tool: str, port: int, files: list[Path], folder: Path) -> str:
    """Send ``files`` in one association with ``tool``; its output."""
    if tool == "dcmsend":
        options = ["-v"]
    else:
        options = ["-v", "-xf", str(_storescu_config(files, folder)), "Sending"]
    result = subprocess.run(
        [tool, *options, "-aet", "MODALITY", "-aec", "RECV", "127.0.0.1", str(port)]
        + [str(p) for p in files],
        env=NODELAY,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout + result.stderr


def _storescu_config(files: list[Path], folder: Path) -> Path:
    """A storescu profile proposing each file's syntax as ``storescu -x? +C`` does one.

    A context per SOP class and syntax: the file's syntax, then the uncompressed ones.
    storescu proposes one compressed syntax per run through its options; its configuration
    file proposes them all in one association.
    """
    syntaxes = ["[[TransferSyntaxes]]"]
    contexts = ["[[PresentationContexts]]", "[Contexts]"]
    for number, path in enumerate(files, 1):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        own = str(ds.file_meta.TransferSyntaxUID)
        offered = [own, *(s for s in UNCOMPRESSED if s != own)]
        syntaxes.append(f"[Syntaxes{number}]")
        syntaxes += [f"TransferSyntax{i} = {uid}" for i, uid in enumerate(offered, 1)]
        contexts.append(f"PresentationContext{number} = {ds.SOPClassUID}\\Syntaxes{number}")
    profile = ["[[Profiles]]", "[Sending]", "PresentationContexts = Contexts"]
    config = folder / "storescu.cfg"
    config.write_text("\n".join(syntaxes + contexts + profile) + "\n")
    return config


@pytest.mark.parametrize("tool", ["dcmsend", "storescu"])
def test_the_spool_holds_what_the_sender_compressed(
    tool: str, files: dict[str, Path], receiver: Receiver, spool: Spool, tmp_path: Path
) -> None:
    output = _send(tool, receiver.port, list(files.values()), tmp_path)
    receiver.stop()

    stored = {e.sop_instance_uid: e for b in spool.batches() for e in spool.manifest(b.id)}
    changed = []
    for syntax, path in files.items():
        if sop_instance_uid(path) not in stored:
            changed.append(f"{path.name}: not stored")
            continue
        entry = stored[sop_instance_uid(path)]
        held = entry.path
        if entry.transfer_syntax_uid != syntax or transfer_syntax(held) != syntax:
            changed.append(f"{path.name}: stored as {entry.transfer_syntax_uid}")
        elif dataset_bytes(held) != dataset_bytes(path):
            changed.append(f"{path.name}: other data set bytes")
    assert changed == [], "\n".join([*changed, f"{tool} output:", output[-3000:]])
    # What a user of the sender sees (storescu names the syntax it sends in even unchanged).
    conversions = [m[0] for m in CONVERSION.finditer(output) if m[1] != m[2]]
    assert conversions == []
