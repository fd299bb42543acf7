"""The one writer of series documents, on the real platform database and index.

Whatever order a series' batches come in, however often a step is retried or an instance
resent, and however many batches write at once, the documents are what the series' records
say; and they stay the size of the series, not of its history.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

from dicomflow.config import Settings
from dicomflow.db.series import SeriesRecords
from dicomflow.pipeline import documents
from dicomflow.pipeline.batch import SpooledBatch
from dicomflow.pipeline.documents import DocumentWriter
from dicomflow.platform import Platform
from tests.dicomfiles import write_ct_series
from tests.pipeline.conftest import spool_batch


@pytest.fixture
def platform(postgres: Settings) -> Iterator[Platform]:
    """The session's platform database and (embedded) index; projects p1 and p2."""
    with Platform(postgres) as connections:
        for name in ("p1", "p2"):
            connections.projects.create_project(name)
        yield connections


class Series:
    """Instances of one series, handed out batch by batch."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.uid, self.study = generate_uid(), generate_uid()
        self.files: dict[int, Path] = {}

    def instances(self, numbers: list[int]) -> list[Path]:
        """The files of these instances (written the first time they are asked for)."""
        new = [n for n in numbers if n not in self.files]
        written = write_ct_series(
            self.folder / generate_uid(), new, series_uid=self.uid, study_uid=self.study
        )
        self.files.update(zip(new, written, strict=True))
        return [self.files[n] for n in numbers]

    def batch(
        self, settings: Settings, numbers: list[int], project: str = "p1", dataset: str = "d1"
    ) -> SpooledBatch:
        batch_id = spool_batch(settings, self.instances(numbers), project, dataset)
        return SpooledBatch.from_settings(settings, batch_id)


def _admin(platform: Platform, uid: str) -> dict[str, Any]:
    document = platform.index.get("admin", uid)
    assert document is not None
    return document


def test_batches_in_any_order_retries_and_resends_give_the_same_document(
    platform: Platform, tmp_path: Path
) -> None:
    writer = DocumentWriter(platform)
    settings = platform.settings
    outcomes = []
    for order in ("ab", "ba"):
        series = Series(tmp_path / order)
        a = series.batch(settings, [1, 2, 3])
        b = series.batch(settings, [3, 4, 5])  # instance 3 sent again
        first, second = (a, b) if order == "ab" else (b, a)
        writer.write_batch(first, archived=False)  # on arrival
        writer.write_batch(second, archived=False)
        writer.write_batch(first, archived=True)  # the DAG of the first batch
        writer.write_batch(first, archived=True)  # a retried task
        storing = _admin(platform, series.uid)
        assert storing["pacs_state"] == "storing", "the second batch is not in the PACS yet"
        writer.write_batch(second, archived=True)
        document = _admin(platform, series.uid)
        assert document["instance_count"] == 5, "a resent instance counts once"
        assert document["batch_count"] == 2
        assert document["pacs_state"] == "stored"
        received = datetime.fromisoformat(document["received_at"])
        assert received == datetime.fromisoformat(a.record.created_at), "the first receipt"
        assert document["last_batch_id"] == b.batch_id
        outcomes.append(
            {k: v for k, v in document.items() if "InstanceUID" not in k and "_at" not in k}
        )
    assert {k: v for k, v in outcomes[0].items() if k != "last_batch_id"} == {
        k: v for k, v in outcomes[1].items() if k != "last_batch_id"
    }


def test_each_project_sees_its_own_copy(platform: Platform, tmp_path: Path) -> None:
    series = Series(tmp_path)
    writer = DocumentWriter(platform)
    writer.write_batch(series.batch(platform.settings, [1, 2], "p1", "d1"), archived=True)
    writer.write_batch(series.batch(platform.settings, [3], "p2", "d2"), archived=True)
    admin = _admin(platform, series.uid)
    assert (admin["project"], admin["dataset"]) == (["p1", "p2"], ["d1", "d2"])
    p1 = platform.index.get("p1", series.uid)
    assert p1 is not None and (p1["project"], p1["dataset"]) == (["p1"], ["d1"])
    assert p1["instance_count"] == admin["instance_count"] == 3


def test_thumbnail_and_validation_are_kept_until_new_ones_come(
    platform: Platform, tmp_path: Path
) -> None:
    series = Series(tmp_path)
    writer = DocumentWriter(platform)
    first = series.batch(platform.settings, [1, 2])
    validation = {"errors": 1, "warnings": 2, "instances_checked": 2, "report_key": "r"}
    writer.write_batch(
        first,
        archived=True,
        thumbnails={series.uid: "thumbnails/t.png"},
        validation={series.uid: validation},
    )
    writer.write_batch(series.batch(platform.settings, [4]), archived=False)
    document = _admin(platform, series.uid)
    assert document["thumbnail_key"] == "thumbnails/t.png"
    assert document["validation"]["errors"] == 1
    assert document["validation"]["missing_instance_numbers"] == [3]


def test_a_validation_summary_that_arrives_late_does_not_undo_a_fuller_one(
    platform: Platform, tmp_path: Path
) -> None:
    """Two runs' summaries written in the other order than they were merged (50 senders)."""
    series = Series(tmp_path)
    writer = DocumentWriter(platform)
    a = series.batch(platform.settings, [1, 2])
    b = series.batch(platform.settings, [3, 4])
    earlier = {"errors": 0, "warnings": 1, "instances_checked": 2, "report_key": "r"}
    later = {"errors": 1, "warnings": 1, "instances_checked": 4, "report_key": "r"}
    writer.write_batch(b, archived=True, validation={series.uid: later})
    writer.write_batch(a, archived=True, validation={series.uid: earlier})
    document = _admin(platform, series.uid)
    assert document["validation"]["instances_checked"] == 4
    assert document["validation"]["level"] == "complete"
    # Findings of the same instances checked again (a resend) replace the stored ones.
    again = {**later, "errors": 0}
    writer.write_batch(a, archived=True, validation={series.uid: again})
    assert _admin(platform, series.uid)["validation"]["errors"] == 0


def _write_at_once(platform: Platform, batches: list[SpooledBatch]) -> None:
    """Each batch written by its own thread and connections, all starting together."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(batches))

    def write(batch: SpooledBatch) -> None:
        try:
            with Platform(platform.settings) as own:
                barrier.wait()
                DocumentWriter(own).write_batch(batch, archived=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_concurrent_batches_of_one_series_are_all_counted(
    platform: Platform, tmp_path: Path
) -> None:
    series = Series(tmp_path)
    _write_at_once(
        platform, [series.batch(platform.settings, [n, n + 1, n + 2]) for n in range(1, 25, 3)]
    )
    document = _admin(platform, series.uid)
    assert (document["instance_count"], document["batch_count"]) == (24, 8)
    assert document["pacs_state"] == "stored"


def test_concurrent_batches_sharing_several_series_are_all_counted(
    platform: Platform, tmp_path: Path
) -> None:
    # A batch's series are written together, under all their locks at once: batches that
    # overlap in several series must wait for each other, not deadlock or lose a count.
    several = [Series(tmp_path / str(n)) for n in range(5)]
    batches = []
    for k in range(6):
        # Every other batch leaves the first series out.
        files = [f for s in several[k % 2 :] for f in s.instances([2 * k + 1, 2 * k + 2])]
        batches.append(
            SpooledBatch.from_settings(platform.settings, spool_batch(platform.settings, files))
        )
    _write_at_once(platform, batches)
    for n, series in enumerate(several):
        document = _admin(platform, series.uid)
        expected = 12 if n else 6
        assert (document["instance_count"], document["batch_count"]) == (expected, expected // 2)
        assert document["pacs_state"] == "stored"


def test_a_document_stays_the_size_of_its_series(platform: Platform, tmp_path: Path) -> None:
    series = Series(tmp_path)
    writer = DocumentWriter(platform)
    writer.write_batch(series.batch(platform.settings, list(range(1, 11))), archived=True)
    once = len(json.dumps(_admin(platform, series.uid)))
    for _ in range(20):  # the whole series sent again, twenty times
        writer.write_batch(series.batch(platform.settings, list(range(1, 11))), archived=True)
    document = _admin(platform, series.uid)
    assert document["instance_count"] == 10 and document["batch_count"] == 21
    assert len(json.dumps(document)) <= once + 64


def test_a_document_of_an_older_version_is_adopted(platform: Platform, tmp_path: Path) -> None:
    series = Series(tmp_path)
    old_uids = [generate_uid() for _ in range(3)]
    platform.index.put(
        "admin",
        [
            {
                "0020000E SeriesInstanceUID_keyword": series.uid,
                "00080060 Modality_keyword": "CT",
                "schema_version": 1,
                "project": ["p1"],
                "dataset": ["old"],
                "sop_instance_uids": old_uids,
                "instance_count": 3,
                "batch_ids": ["b0"],
                "archived_batch_ids": ["b0"],
                "pacs_state": "stored",
                "received_at": "2024-01-01T00:00:00+00:00",
            }
        ],
    )
    DocumentWriter(platform).write_batch(series.batch(platform.settings, [7]), archived=True)
    document = _admin(platform, series.uid)
    assert document["instance_count"] == 4, "the old document's instances are still counted"
    assert document["dataset"] == ["d1", "old"]
    assert document["schema_version"] == 2 and "sop_instance_uids" not in document
    assert datetime.fromisoformat(document["received_at"]) == datetime(2024, 1, 1, tzinfo=UTC)
    assert SeriesRecords(platform.engine).known(series.uid)


def test_a_batch_of_more_series_than_one_write_takes_is_written_whole(
    platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(documents, "SERIES_PER_WRITE", 2)
    several = [Series(tmp_path / str(n)) for n in range(5)]
    files = [f for s in several for f in s.instances([1, 2])]
    batch = SpooledBatch.from_settings(platform.settings, spool_batch(platform.settings, files))
    written = DocumentWriter(platform).write_batch(batch, archived=False)
    assert sorted(written) == sorted(s.uid for s in several)
    for series in several:
        assert _admin(platform, series.uid)["instance_count"] == 2


def test_a_runs_batches_of_one_series_are_written_as_one(
    platform: Platform, tmp_path: Path
) -> None:
    # A sender that opens an association per image: a run takes many one-image batches of
    # one series. Written together, the document is the one written batch by batch would be,
    # its header that of the lowest Instance Number.
    writer = DocumentWriter(platform)
    documents = []
    for together in (False, True):
        series = Series(tmp_path / str(together))
        batches = [series.batch(platform.settings, numbers) for numbers in ([4], [2], [1, 3])]
        if together:
            assert writer.write_batches(batches, archived=True) == [series.uid]
        else:
            for batch in batches:
                writer.write_batch(batch, archived=True)
        document = _admin(platform, series.uid)
        assert (document["instance_count"], document["batch_count"]) == (4, 3)
        first = pydicom.dcmread(series.files[1], stop_before_pixels=True)
        assert document["00201041 SliceLocation_float"] == float(first.SliceLocation)
        documents.append(
            {k: v for k, v in document.items() if "InstanceUID" not in k and "_at" not in k}
        )
    assert {k: v for k, v in documents[0].items() if k != "last_batch_id"} == {
        k: v for k, v in documents[1].items() if k != "last_batch_id"
    }
