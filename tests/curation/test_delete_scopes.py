"""Deleting a dataset or a study: a series also held elsewhere stays there."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from dicomflow.config import Settings
from dicomflow.curation.deletion import (
    NothingToDeleteError,
    Outcome,
    delete_dataset,
    delete_study,
)
from dicomflow.platform import Platform
from dicomflow.storage.keys import thumbnail_key

PNG = b"\x89PNG\r\n\x1a\n"


def _doc(uid: str, study: str, project: list[str], dataset: list[str]) -> dict[str, Any]:
    return {
        "0020000E SeriesInstanceUID_keyword": uid,
        "0020000D StudyInstanceUID_keyword": study,
        "00080060 Modality_keyword": "CT",
        "project": project,
        "dataset": dataset,
        "instance_count": 1,
    }


def test_a_dataset_goes_and_its_series_stay_where_else_they_are(
    postgres: Settings, s3: Settings, orthanc: Settings
) -> None:
    tag = uuid.uuid4().hex[:6]
    p, q = f"dsd-p-{tag}", f"dsd-q-{tag}"
    study = f"1.2.826.0.1.3680043.8.498.88.{int(tag, 16)}"
    both_ds, other_project = f"{study}.1", f"{study}.2"
    with Platform(postgres) as platform:
        for name in (p, q):
            platform.projects.create_project(name)
            platform.index.ensure_project(name)
            platform.objects.ensure_bucket(name)
        # both_ds: in datasets ds1 and ds2 of p; other_project: in ds1 of p and in q.
        platform.projects.map_series(p, "ds1", [(both_ds, study), (other_project, study)])
        platform.projects.map_series(p, "ds2", [(both_ds, study)])
        platform.projects.map_series(q, "dq", [(other_project, study)])
        platform.index.put(p, [_doc(both_ds, study, [p], ["ds1", "ds2"])])
        platform.index.put(p, [_doc(other_project, study, [p], ["ds1"])])
        platform.index.put(q, [_doc(other_project, study, [q], ["dq"])])
        platform.index.put("admin", [_doc(other_project, study, [p, q], ["ds1", "dq"])])
        platform.objects.put_bytes(p, thumbnail_key(other_project), PNG, "image/png")
        platform.objects.put_bytes(q, thumbnail_key(other_project), PNG, "image/png")

        report = delete_dataset(platform, p, "ds1", actor="test")
        outcomes = {s.series_uid: (s.outcome, s.kept_in) for s in report.series}
        assert outcomes == {
            both_ds: (Outcome.LEFT_DATASET, (p,)),  # still in p, through ds2
            other_project: (Outcome.UNMAPPED, (q,)),
        }
        assert platform.projects.datasets(p) == ["ds2"]
        assert platform.projects.series_of(p) == [both_ds]
        assert platform.projects.series_datasets(p, both_ds) == ["ds2"]
        assert platform.index.get(p, other_project) is None
        assert platform.index.get(q, other_project) is not None
        assert platform.index.get("admin", other_project)["project"] == [q]  # type: ignore[index]
        assert not platform.objects.exists(p, thumbnail_key(other_project))
        assert platform.objects.exists(q, thumbnail_key(other_project))

        with pytest.raises(NothingToDeleteError, match="has no dataset 'ds1'"):
            delete_dataset(platform, p, "ds1", actor="test")
        # The study: what p still holds of it is taken out; q keeps its copy.
        with pytest.raises(NothingToDeleteError, match="holds no series of study"):
            delete_study(platform, p, "1.2.3.4", actor="test")
        gone = delete_study(platform, q, study, actor="test")
        assert [(s.series_uid, s.outcome) for s in gone.series] == [
            (other_project, Outcome.DELETED)
        ]
        assert platform.index.get("admin", other_project) is None
        assert platform.projects.series_projects(other_project) == []
