"""Watched folders: a file is taken only once it stopped changing; junk goes to the problem
area with the reason; every pass leaves a record."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pydicom

from dicomflow.config import Settings, WatchedFolder
from dicomflow.db.projects import ProjectStore
from dicomflow.db.session import make_engine
from dicomflow.importer.watch import FolderWatch, read_passes
from dicomflow.spool.store import Spool
from dicomflow.stack.components import Watcher, all_components
from tests.dicomfiles import fresh_copy


def test_a_file_still_being_written_is_taken_only_once_it_stopped_changing(
    postgres: Settings, tmp_path: Path
) -> None:
    project = f"watch-{uuid.uuid4().hex[:6]}"
    ProjectStore(make_engine(postgres.platform_db_url)).create_project(project)
    incoming = tmp_path / "incoming"
    (incoming / "sub").mkdir(parents=True)
    ready = fresh_copy("CT_small.dcm", incoming / "sub")
    whole = fresh_copy("MR_small.dcm", tmp_path / "source").read_bytes()
    growing = incoming / "growing.dcm"
    growing.write_bytes(whole[:1000])  # a copy in progress
    (incoming / "junk.dcm").write_bytes(b"not dicom at all")
    (incoming / "notes.txt").write_text("not a candidate: other extension")
    folder = WatchedFolder(path=incoming, project=project, dataset="drop", on_done="move")
    settings = postgres.replace(watch=postgres.watch.replace(folders=[folder]))
    watch = FolderWatch(settings, folder)
    spool = Spool.from_settings(settings)

    first = watch.poll()  # everything is new: nothing is taken yet
    assert first is not None and (first.found, first.waiting, first.imported) == (3, 3, 0)
    assert ready.exists() and growing.exists()

    with open(growing, "ab") as fh:  # the writer goes on
        fh.write(whole[1000:2000])
    second = watch.poll()
    assert second is not None
    assert (second.found, second.waiting, second.imported) == (3, 1, 1)
    assert second.problems == [
        {"file": "junk.dcm", "reason": "not a DICOM Part 10 file (no DICM prefix at byte 128)"}
    ]
    assert growing.exists() and not ready.exists()
    done = settings.watch_done_dir / project / "drop" / "sub" / ready.name
    assert done.is_file()
    [batch_id] = second.batches
    [taken] = spool.manifest(batch_id)
    assert taken.sop_instance_uid == str(pydicom.dcmread(done).SOPInstanceUID)
    problem = next(p for p in spool.problems() if p.details.get("file") == "junk.dcm")
    assert problem.project == project and "no DICM prefix" in problem.reason
    assert (incoming / "notes.txt").exists()  # never a candidate

    with open(growing, "ab") as fh:  # the writer finishes
        fh.write(whole[2000:])
    assert watch.poll().imported == 0  # type: ignore[union-attr]  # changed again: waits
    last = watch.poll()
    assert last is not None and (last.found, last.waiting, last.imported) == (1, 0, 1)
    [instance] = spool.manifest(last.batches[0])
    assert instance.sha256 == hashlib.sha256(whole).hexdigest()
    assert not growing.exists()
    assert watch.poll() is None  # an empty folder writes no record

    records = read_passes(settings)
    mine = [r for r in records if r.project == project]
    assert [r.imported for r in mine] == [1, 0, 1, 0]  # newest first
    assert mine[0].folder == str(incoming) and mine[0].seconds >= 0


def test_the_stack_runs_a_watcher_only_when_folders_are_configured(settings: Settings) -> None:
    assert not any(isinstance(c, Watcher) for c in all_components(settings))
    folder = WatchedFolder(path=Path("/srv/in"), project="p", dataset="d")
    with_folder = settings.replace(watch=settings.watch.replace(folders=[folder]))
    assert any(isinstance(c, Watcher) for c in all_components(with_folder))
