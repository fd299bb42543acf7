"""Series documents for the index tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dicomflow.index.base import SERIES_UID, SeriesIndex

ROOT = "1.2.826.0.1.3680043.8.498"
# Receipt times grow with the series number (and stay valid dates for any number).
RECEIVED = datetime(2024, 5, 10, 8, tzinfo=UTC)


def series(n: int, **fields: Any) -> dict[str, Any]:
    """A series document with the usual fields; ``fields`` override them."""
    doc: dict[str, Any] = {
        "00100020 PatientID_keyword": f"PAT{n % 4}",
        "00100010 PatientName_keyword": ["DOE^JOHN", "SMITH^ANNA", "MULLER^LUCA", "ROSSI^MARIA"][
            n % 4
        ],
        "00080060 Modality_keyword": "CT",
        "00180015 BodyPartExamined_keyword": "CHEST",
        "00080020 StudyDate_date": f"2023-0{1 + n % 9}-1{n % 10}",
        "00080030 StudyTime_time": "10:00:00",
        "0008103E SeriesDescription_keyword": "Thorax contrast",
        "00081030 StudyDescription_keyword": "CT Chest",
        "00080016 SOPClassUID_keyword": "1.2.840.10008.5.1.4.1.1.2",
        "0020000D StudyInstanceUID_keyword": f"{ROOT}.1.{n // 2}",
        "0020000E SeriesInstanceUID_keyword": f"{ROOT}.2.{n}",
        "00200011 SeriesNumber_integer": n,
        "00180050 SliceThickness_float": 1.25,
        "dataset": ["ds-a"],
        "instance_count": 10 + n,
        "batch_count": 1,
        "calling_ae": "DS-A",
        "called_ae": "ALPHA",
        "received_at": (RECEIVED + timedelta(hours=n)).isoformat(),
        "validation": {"errors": 0, "warnings": 0, "checked_at": "2024-05-01T00:00:00+00:00"},
    }
    doc.update(fields)
    return doc


def uid(n: int) -> str:
    return f"{ROOT}.2.{n}"


def store(index: SeriesIndex, project: str, documents: list[dict[str, Any]]) -> None:
    """Write series into a project and ``admin`` as the document writer lays them out.

    The project's copy names that project; the admin copy names every project (and dataset)
    the series was stored in so far. (The pipeline computes these from its records; the
    backend tests only need documents laid out the same way.)
    """
    for document in documents:
        series_uid = document[SERIES_UID]
        admin = index.get("admin", series_uid) or {}
        projects = sorted({*(admin.get("project") or []), project} - {"admin"} or {"admin"})
        datasets = sorted({*(admin.get("dataset") or []), *(document.get("dataset") or [])})
        if project != "admin":
            index.put(project, [{**document, "project": [project]}])
        index.put("admin", [{**document, "project": projects, "dataset": datasets}])
