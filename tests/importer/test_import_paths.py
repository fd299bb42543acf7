"""import_paths on the real platform database: detection, reasons, archives, batches, outbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomflow.config import Settings
from dicomflow.db.projects import ProjectStore
from dicomflow.importer import (
    FailureKind,
    IgnoreReason,
    ImportOutcome,
    ImportRefusedError,
    import_paths,
)
from dicomflow.spool.records import BatchState, Door
from dicomflow.spool.store import Spool
from tests.importer.conftest import PROJECT, private
from tests.importer.importer_testutil import (
    bad_uid_file,
    make_zip,
    new_series,
    pydicom_file,
    truncated_zip,
    unreadable_dicom,
)


def _mixed_folder(root: Path) -> dict[str, str]:
    """A folder as users send them; returns series uid per label."""
    series = {}
    series["loose"], _ = new_series(root / "study" / "ct", 3)
    series["zipped"], zipped = new_series(root / "tmp-zip", 2, description="zipped")
    series["nested"], nested = new_series(root / "tmp-nested", 1, description="nested")
    series["deep"], deep = new_series(root / "tmp-deep", 1, description="deep")
    inner_inner = make_zip(root / "tmp-deep.zip", {"deep/x.dcm": deep[0]})
    inner = make_zip(root / "tmp-inner.zip", {"n/a.dcm": nested[0], "n/deeper.zip": inner_inner})
    make_zip(
        root / "study" / "archive.zip",
        {
            "z/1.dcm": zipped[0],
            "z/2.dcm": zipped[1],
            "z/notes.txt": b"hello",
            "z/inner.zip": inner,
            "z/DICOMDIR": pydicom_file("DICOMDIR"),
        },
    )
    for tmp in root.glob("tmp-*"):
        tmp.unlink() if tmp.is_file() else None
    mr = root / "study" / "MR.IMA"
    mr.write_bytes((root / "study" / "ct" / "im000.dcm").read_bytes())
    new_series(root / "other", 1, name="MR_small.dcm")
    (root / "other" / "im000.dcm").rename(mr)
    (root / "study" / "fake.dcm").write_bytes(b"not dicom at all" * 20)
    bad_uid_file(root / "study" / "bad-uid.dcm")
    unreadable_dicom(root / "study" / "broken.dcm")
    (root / "study" / "readme.txt").write_text("a study")
    return series


def test_folder_with_archives_is_imported_with_a_reason_for_every_file_left_out(
    settings: Settings,
    projects: ProjectStore,
    tmp_path: Path,
) -> None:
    series = _mixed_folder(tmp_path / "in")
    local = private(settings, tmp_path / "var")
    report = import_paths(local, [tmp_path / "in" / "study"], PROJECT, "mixed")
    assert report.outcome is ImportOutcome.IMPORTED, report.lines()
    reasons = {item.name: item.reason for item in report.ignored}
    assert reasons == {
        "study/MR.IMA": IgnoreReason.WRONG_EXTENSION,
        "study/readme.txt": IgnoreReason.WRONG_EXTENSION,
        "study/fake.dcm": IgnoreReason.NOT_DICOM,
        "study/bad-uid.dcm": IgnoreReason.BAD_UID,
        "study/broken.dcm": IgnoreReason.UNREADABLE,
        "study/archive.zip!z/notes.txt": IgnoreReason.WRONG_EXTENSION,
        "study/archive.zip!z/DICOMDIR": IgnoreReason.DICOMDIR,
        "study/archive.zip!z/inner.zip!n/deeper.zip": IgnoreReason.NESTED_TOO_DEEP,
    }
    # 3 loose + 2 zipped + 1 nested one level down; the deeper one is not unpacked.
    assert report.imported == 6
    assert report.found == 6 + len(reasons)
    counts = {s.series_instance_uid: s.instances for s in report.series}
    assert counts == {series["loose"]: 3, series["zipped"]: 2, series["nested"]: 1}
    assert {s.description for s in report.series} == {"import test", "zipped", "nested"}
    assert series["deep"] not in counts

    # One batch, closed into the outbox of this private spool (no dispatcher looks at it).
    spool = Spool.from_settings(local)
    assert len(report.batches) == 1
    assert [b.id for b in spool.pending()] == report.batches
    record = spool.batch(report.batches[0])
    assert record.state is BatchState.PENDING and record.instances == 6
    assert record.origin.door is Door.IMPORT and record.dataset == "mixed"
    # Rejected DICOM is kept with its reason, as the receiver does.
    problems = [p.reason for p in spool.problems()]
    assert len(problems) == 2 and any("SeriesInstanceUID" in p for p in problems)
    # Nothing given was touched, scratch space is gone.
    assert (tmp_path / "in" / "study" / "archive.zip").is_file()
    assert not any((local.imports_dir).iterdir())
    text = "\n".join(report.lines())
    assert "study/fake.dcm: not DICOM" in text and series["loose"] in text


def test_empty_extension_detects_dicom_by_content(
    settings: Settings, projects: ProjectStore, tmp_path: Path
) -> None:
    _mixed_folder(tmp_path / "in")
    local = private(settings, tmp_path / "var")
    report = import_paths(
        local,
        [tmp_path / "in" / "study"],
        PROJECT,
        "bycontent",
        extension="",
    )
    reasons = {item.name: item.reason for item in report.ignored}
    assert "study/MR.IMA" not in reasons  # DICOM whatever its name
    assert reasons["study/readme.txt"] is IgnoreReason.NOT_DICOM
    assert reasons["study/archive.zip!z/notes.txt"] is IgnoreReason.NOT_DICOM
    assert report.imported == 7
    assert [b.id for b in Spool.from_settings(local).pending()] == report.batches


def test_batches_roll_over_at_the_receivers_limits(
    settings: Settings, projects: ProjectStore, tmp_path: Path
) -> None:
    _, files = new_series(tmp_path / "in", 5)
    local = private(settings, tmp_path / "var")
    local = local.replace(receiver=local.receiver.replace(batch_max_instances=2))
    report = import_paths(local, files, PROJECT, "rollover")
    spool = Spool.from_settings(local)
    assert [spool.batch(b).instances for b in report.batches] == [2, 2, 1]
    assert all(spool.batch(b).state is BatchState.PENDING for b in report.batches)


def test_no_dicom_found_is_an_outcome_not_a_crash(
    settings: Settings, projects: ProjectStore, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "volume.nii").write_bytes(b"\x5c\x01" + b"\0" * 400)
    make_zip(tmp_path / "in" / "nifti.zip", {"sub/brain.nii.gz": b"\x1f\x8b" + b"\0" * 50})
    report = import_paths(
        private(settings, tmp_path / "var"), [tmp_path / "in"], PROJECT, "nothing", extension=""
    )
    assert report.outcome is ImportOutcome.NO_DICOM
    assert report.batches == [] and report.found == 2
    assert "no DICOM found" in "\n".join(report.lines())


def test_a_corrupt_or_unsafe_archive_fails_the_import_naming_it(
    settings: Settings, projects: ProjectStore, tmp_path: Path
) -> None:
    _, files = new_series(tmp_path / "ok", 2)
    corrupt = truncated_zip(tmp_path / "broken.zip", {"a.dcm": files[0]}, keep=300)
    slip = make_zip(tmp_path / "slip.zip", {"../../escape.dcm": files[1]})
    bomb = make_zip(tmp_path / "bomb.zip", {"zeros.dcm": b"\0" * 3_000_000})
    local = private(settings, tmp_path / "var", max_unpacked_bytes=1_000_000)
    report = import_paths(local, [*files, corrupt, slip, bomb], PROJECT, "bad")
    assert report.outcome is ImportOutcome.FAILED
    kinds = {f.name: f.kind for f in report.failures}
    assert kinds == {
        "broken.zip": FailureKind.CORRUPT_ARCHIVE,
        "slip.zip": FailureKind.UNSAFE_ARCHIVE,
        "bomb.zip": FailureKind.ARCHIVE_TOO_LARGE,
    }
    assert report.imported == 2  # the good files are in, the failure is reported
    assert not (tmp_path / "escape.dcm").exists() and not (local.data_dir / "escape.dcm").exists()
    text = "\n".join(report.lines())
    assert "FAILED broken.zip" in text and "max_unpacked_bytes = 1000000" in text


def test_unknown_project_and_bad_names_are_refused_up_front(
    settings: Settings, projects: ProjectStore, tmp_path: Path
) -> None:
    local = private(settings, tmp_path / "var")
    with pytest.raises(ImportRefusedError, match=r"project 'nope' does not exist.*imports"):
        import_paths(local, [tmp_path], "nope", "d")
    with pytest.raises(ImportRefusedError, match="dataset name"):
        import_paths(local, [tmp_path], PROJECT, "a\\b")
    with pytest.raises(ImportRefusedError, match="extension"):
        import_paths(local, [tmp_path], PROJECT, "d", extension="a/b")
