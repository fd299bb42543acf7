"""Safe unpacking: zip slip, zip bombs, entry counts, corrupt archives (no components)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from dicomflow.importer.archives import (
    ArchiveError,
    UnpackBudget,
    unpack_zip,
    unsafe_member_reason,
)
from dicomflow.importer.report import FailureKind
from tests.importer.importer_testutil import make_zip


def _unpack(path: Path, scratch: Path, budget: UnpackBudget) -> list[tuple[str, bytes]]:
    scratch.mkdir(exist_ok=True)
    return [
        (name, file.read_bytes()) for file, name, _ in unpack_zip(path, "a.zip", scratch, budget)
    ]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("../evil.dcm", "'..'"),
        ("ok/../../evil.dcm", "'..'"),
        ("/etc/evil.dcm", "absolute"),
        ("..\\..\\evil.dcm", "'..'"),
        ("C:/evil.dcm", "drive letter"),
    ],
)
def test_zip_slip_entries_refuse_the_archive_before_anything_is_unpacked(
    tmp_path: Path, entry: str, reason: str
) -> None:
    archive = tmp_path / "slip.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", b"first")
        zf.writestr(zipfile.ZipInfo(entry), b"payload")
    scratch = tmp_path / "scratch"
    with pytest.raises(ArchiveError) as err:
        _unpack(archive, scratch, UnpackBudget(1 << 30, 1000))
    assert err.value.kind is FailureKind.UNSAFE_ARCHIVE
    assert "evil.dcm" in str(err.value) and reason in str(err.value) and "a.zip" in str(err.value)
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "evil.dcm").exists()


def test_plain_names_are_safe() -> None:
    assert unsafe_member_reason("folder/sub/file..dcm") is None
    assert unsafe_member_reason("a/./b.dcm") is None


def test_bomb_by_declared_size_is_refused_before_unpacking(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bomb.zip", {"zeros.bin": b"\0" * 5_000_000})
    assert archive.stat().st_size < 50_000  # compresses ~1000:1
    scratch = tmp_path / "scratch"
    with pytest.raises(ArchiveError, match=r"max_unpacked_bytes = 1000000") as err:
        _unpack(archive, scratch, UnpackBudget(1_000_000, 1000))
    assert err.value.kind is FailureKind.ARCHIVE_TOO_LARGE
    assert list(scratch.iterdir()) == []


def test_too_many_entries_are_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "many.zip", {f"f{i}.txt": b"x" for i in range(12)})
    with pytest.raises(
        ArchiveError, match=r"12 entries, more than uploads.max_archive_entries = 10"
    ):
        _unpack(archive, tmp_path / "scratch", UnpackBudget(1 << 30, 10))


def test_corrupt_archives_fail_with_their_name_and_the_error(tmp_path: Path) -> None:
    good = make_zip(tmp_path / "good.zip", {"x.dcm": os.urandom(10_000)})
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ArchiveError, match=r"a.zip: not a readable zip archive") as err:
        _unpack(truncated, tmp_path / "s1", UnpackBudget(1 << 30, 100))
    assert err.value.kind is FailureKind.CORRUPT_ARCHIVE
    # Data damaged inside an entry: the CRC check names the entry.
    data = bytearray(make_zip(tmp_path / "stored.zip", {"y.dcm": os.urandom(10_000)}).read_bytes())
    data[200] ^= 0xFF
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match=r"entry 'y.dcm'") as err:
        _unpack(damaged, tmp_path / "s2", UnpackBudget(1 << 30, 100))
    assert err.value.kind is FailureKind.CORRUPT_ARCHIVE


def test_entries_are_unpacked_and_removed_after_use(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "ok.zip", {"d/one.dcm": b"1", "d/two.txt": b"22", "d/": b""})
    scratch = tmp_path / "scratch"
    assert _unpack(archive, scratch, UnpackBudget(1 << 30, 100)) == [
        ("a.zip!d/one.dcm", b"1"),
        ("a.zip!d/two.txt", b"22"),
    ]
    assert list(scratch.iterdir()) == []
