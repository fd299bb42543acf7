"""``import_nifti`` itself: what it finds in folders and archives, and how it names failures.

No dispatcher looks at the private spool: the batches stay in its outbox.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from dicomflow.config import Settings
from dicomflow.db.projects import ProjectStore
from dicomflow.importer import ImportRefusedError
from dicomflow.importer.nifti import import_nifti
from dicomflow.importer.nifti_report import NiftiImportOutcome, NiftiImportReport
from dicomflow.nifti import NiftiImportOptions
from dicomflow.spool.store import Spool
from tests.importer.importer_testutil import make_zip
from tests.nifti_import.conftest import PROJECT
from tests.nifti_import.nifti_import_testutil import SHAPE, basic_folder


@pytest.fixture
def local(postgres: Settings, nifti_project: str, tmp_path: Path) -> Settings:
    """The session's database, a private data directory (spool, scratch space)."""
    return postgres.replace(data_dir=tmp_path / "var")


def test_archives_nested_folders_and_bad_inputs_are_each_reported(
    local: Settings, platform_engine: Engine, tmp_path: Path
) -> None:
    projects = ProjectStore(platform_engine)
    inner = basic_folder(tmp_path / "inner", ["deep"], seed=70)
    inner_zip = make_zip(tmp_path / "inner.zip", {p.name: p for p in inner.iterdir()})
    outer = basic_folder(tmp_path / "outer", ["top"], seed=71)
    archive = make_zip(
        tmp_path / "outer.zip",
        {f"a/b/{p.name}": p for p in outer.iterdir()} | {"more/inner.zip": inner_zip},
    )
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(archive.read_bytes()[:300])
    slip = make_zip(tmp_path / "slip.zip", {"../evil.nii": b"x"})
    # An import folder with a zip beside its volumes: both are imported.
    side = basic_folder(tmp_path / "side", ["side"], seed=72)
    zipped = basic_folder(tmp_path / "zipped", ["zipped"], seed=73)
    make_zip(side / "extra.zip", {p.name: p for p in zipped.iterdir()})
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no volumes here")

    report = import_nifti(
        local,
        [archive, corrupt, slip, side, empty],
        PROJECT,
        "core",
        options=NiftiImportOptions(),
        projects=projects,
    )
    names = {f"{c.source}: {c.case_id}" for c in report.ok_cases}
    # A zip in a zip is unpacked (uploads.nested_zip_depth = 1) and named by its path.
    assert names == {
        f"{archive}!a/b: top",
        f"{archive}!more/inner.zip: deep",
        f"{side}: side",
        f"{side}/extra.zip: zipped",
    }
    failed = {s.name: s.error_type for s in report.failed_sources}
    assert failed == {
        str(corrupt): "ArchiveError",
        str(slip): "ArchiveError",
        str(empty): "LayoutError",
    }
    errors = {s.name: s.error for s in report.failed_sources}
    assert "zip slip" in errors[str(slip)] and "no NIfTI import folder" in errors[str(empty)]
    assert report.outcome is NiftiImportOutcome.PARTIAL
    # Four cases of 8 slices and a SEG each, in the spool, waiting for the outbox.
    assert report.dicom.imported == 4 * (SHAPE[2] + 1)
    spool = Spool.from_settings(local)
    assert [b.id for b in spool.pending()] == report.dicom.batches != []
    assert sum(spool.batch(b).instances for b in report.dicom.batches) == 36
    # Nothing of the scratch space is left behind, and no scratch path is shown.
    assert not any(local.imports_dir.iterdir()) and (side / "extra.zip").is_file()
    text = "\n".join(report.lines())
    assert str(local.imports_dir) not in text and "FAILED " + str(slip) in text
    again = NiftiImportReport.from_dict(json.loads(json.dumps(report.as_dict())))
    assert again.as_dict() == report.as_dict()


def test_nothing_to_convert_and_refusals(
    local: Settings, platform_engine: Engine, tmp_path: Path
) -> None:
    projects = ProjectStore(platform_engine)
    folder = basic_folder(tmp_path / "in", [], seed=0, meta={})
    report = import_nifti(local, [folder], PROJECT, "core", projects=projects)
    assert report.outcome is NiftiImportOutcome.FAILED
    assert report.failed_sources[0].name == str(folder)
    with pytest.raises(ImportRefusedError, match="does not exist"):
        import_nifti(local, [folder], "nope", "core", projects=projects)
    with pytest.raises(ImportRefusedError):
        import_nifti(local, [folder], PROJECT, "x" * 17, projects=projects)
