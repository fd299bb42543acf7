"""The contract of every index backend: filters, paging, facets, storage, isolation, concurrency.

Documents are computed by the pipeline's writer; a backend stores them as given (the writer's
own contract is tests/pipeline/test_documents.py).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dicomflow.index.base import SERIES_UID, SeriesIndex, SeriesQuery
from tests.index.samples import ROOT, series, store, uid

# The corpus of the filter tests: project alpha gets 0-7, beta gets 8-9 (and 7 too).
CORPUS: dict[int, dict[str, Any]] = {
    0: {},
    1: {
        "00080060 Modality_keyword": "MR",
        "0008103E SeriesDescription_keyword": "T1 AX post gad",
        "00180015 BodyPartExamined_keyword": "HEAD",
        "00080016 SOPClassUID_keyword": "1.2.840.10008.5.1.4.1.1.4",
        "validation": {"errors": 2, "warnings": 1, "level": "representative"},
    },
    2: {
        "00080060 Modality_keyword": "MR",
        "0008103E SeriesDescription_keyword": "T2 FLAIR sag",
        "00180015 BodyPartExamined_keyword": "HEAD",
        "dataset": ["ds-b"],
        "00080016 SOPClassUID_keyword": "1.2.840.10008.5.1.4.1.1.4",
    },
    3: {
        "00080020 StudyDate_date": "2019-12-31",
        "validation": {"errors": 0, "warnings": 3, "level": "complete"},
    },
    4: {"00080020 StudyDate_date": "2020-01-01", "dataset": ["ds-a", "ds-b"]},
    5: {
        "00080060 Modality_keyword": "SEG",
        "0008103E SeriesDescription_keyword": "Lung nodules",
        "00080020 StudyDate_date": "2020-12-31",
        "validation": {"errors": 1, "warnings": 0},
    },
    6: {
        "00080060 Modality_keyword": "PT",
        "00081030 StudyDescription_keyword": "Whole body PET",
        "00080020 StudyDate_date": "2021-01-01",
    },
    7: {"00100010 PatientName_keyword": "O'BRIEN^SEAN", "00100020 PatientID_keyword": "PX-7"},
    8: {"dataset": ["beta-ds"], "00080060 Modality_keyword": "CR"},
    9: {"dataset": ["beta-ds"], "00080060 Modality_keyword": "MR"},
}


@pytest.fixture
def corpus(index: SeriesIndex) -> SeriesIndex:
    """The index holding CORPUS: alpha 0-7, beta 7-9."""
    store(index, "alpha", [series(n, **CORPUS[n]) for n in range(8)])
    store(index, "beta", [series(n, **CORPUS[n]) for n in (7, 8, 9)])
    return index


def found(index: SeriesIndex, project: str, **params: Any) -> set[int]:
    """Numbers of the series a query finds (all pages)."""
    result = index.search(project, SeriesQuery.from_params({**params, "size": "1000"}))
    assert result.total == len(result.items)
    return {int(doc[SERIES_UID].rsplit(".", 1)[1]) for doc in result.items}


FILTER_CASES = [
    ({}, set(range(8))),
    ({"dataset": "ds-b"}, {2, 4}),
    ({"dataset": ["ds-b", "ds-a"]}, set(range(8))),
    ({"modality": "MR"}, {1, 2}),
    ({"modality": "mr,seg"}, {1, 2, 5}),
    ({"patient_id": "PX-7"}, {7}),
    ({"patient_id": "PAT1"}, {1, 5}),
    ({"patient_name": "doe"}, {0, 4}),
    ({"patient_name": "smi an"}, {1, 5}),
    ({"patient_name": "sean brien"}, {7}),
    ({"body_part": "head"}, {1, 2}),
    ({"from": "2020-01-01", "to": "2020-12-31"}, {4, 5}),
    ({"from": "2021-01-01"}, {0, 1, 2, 6, 7}),
    ({"to": "2019-12-31"}, {3}),
    ({"description": "t1 gad"}, {1}),
    ({"description": "whole pet"}, {6}),
    ({"description": "nodule"}, {5}),
    ({"has_errors": "true"}, {1, 5}),
    ({"has_errors": "false"}, {0, 2, 3, 4, 6, 7}),
    ({"has_warnings": "true"}, {1, 3}),
    ({"validation": "none"}, {0, 2, 4, 5, 6, 7}),
    ({"validation": "Representative"}, {1}),
    ({"validation": "complete,representative"}, {1, 3}),
    ({"sop_class": "1.2.840.10008.5.1.4.1.1.4"}, {1, 2}),
    ({"study_uid": f"{ROOT}.1.2"}, {4, 5}),
    ({"q": "flair"}, {2}),
    ({"q": "rossi"}, {3}),
    ({"q": "ds-b"}, {2, 4}),
    ({"q": "PX-7"}, {7}),
    ({"q": "seg"}, {5}),
    ({"q": "nothing-like-this"}, set()),
    ({"modality": "CT", "has_errors": "false", "from": "2020-01-01"}, {0, 4, 7}),
]


@pytest.mark.parametrize(("params", "expected"), FILTER_CASES, ids=lambda v: str(v))
def test_filter(corpus: SeriesIndex, params: dict[str, Any], expected: set[int]) -> None:
    assert found(corpus, "alpha", **params) == expected


def test_project_isolation(corpus: SeriesIndex) -> None:
    assert found(corpus, "beta") == {7, 8, 9}
    assert found(corpus, "admin") == set(range(10))
    assert found(corpus, "beta", modality="MR") == {9}
    assert found(corpus, "alpha", dataset="beta-ds") == set()
    assert corpus.get("beta", uid(0)) is None
    assert corpus.get("alpha", uid(8)) is None
    assert corpus.get("admin", uid(8)) is not None
    assert found(corpus, "gamma") == set()
    # The series in both projects: each project sees its own copy, admin the union.
    assert corpus.get("alpha", uid(7))["project"] == ["alpha"]  # type: ignore[index]
    assert corpus.get("admin", uid(7))["project"] == ["alpha", "beta"]  # type: ignore[index]


def test_paging_and_default_sort(corpus: SeriesIndex) -> None:
    seen: list[str] = []
    for page in (1, 2, 3):
        result = corpus.search("alpha", SeriesQuery(page=page, size=3))
        assert result.total == 8
        assert result.page == page
        seen += [d[SERIES_UID] for d in result.items]
    assert len(seen) == 8
    # Newest first: received_at grows with the series number.
    assert seen == [uid(n) for n in range(7, -1, -1)]
    assert corpus.search("alpha", SeriesQuery(page=4, size=3)).items == []


def test_sort_by_study_date_with_ties(corpus: SeriesIndex) -> None:
    result = corpus.search("alpha", SeriesQuery(sort="study_date", order="asc", size=100))
    dates = [(d["00080020 StudyDate_date"], d[SERIES_UID]) for d in result.items]
    assert dates == sorted(dates)
    assert dates[0][1] == uid(3)
    desc = corpus.search("alpha", SeriesQuery(sort="study_date", order="desc", size=100))
    assert [d[SERIES_UID] for d in desc.items] == [u for _, u in reversed(dates)]


def test_sort_by_patient_id(corpus: SeriesIndex) -> None:
    result = corpus.search("alpha", SeriesQuery(sort="patient_id", order="asc", size=100))
    ids = [d["00100020 PatientID_keyword"] for d in result.items]
    assert ids == sorted(ids)


def test_facets(corpus: SeriesIndex) -> None:
    result = corpus.search("alpha", SeriesQuery(size=1))
    assert result.total == 8
    assert len(result.items) == 1
    assert result.facets["modality"] == {"CT": 4, "MR": 2, "SEG": 1, "PT": 1}
    assert result.facets["dataset"] == {"ds-a": 7, "ds-b": 2}
    assert result.facets["project"] == {"alpha": 8}
    admin = corpus.search("admin", SeriesQuery(size=1))
    assert admin.facets["project"] == {"alpha": 8, "beta": 3}
    assert admin.facets["dataset"] == {"ds-a": 7, "ds-b": 2, "beta-ds": 2}
    # Facets count the matches, not the page.
    mr = corpus.search("admin", SeriesQuery(modality=("MR",), size=1))
    assert mr.facets["modality"] == {"MR": 3}
    assert mr.facets["project"] == {"alpha": 2, "beta": 1}


def test_counts(corpus: SeriesIndex) -> None:
    counts = corpus.counts("alpha")
    assert counts.series == 8
    assert counts.instances == sum(10 + n for n in range(8))
    assert counts.studies == 4
    assert counts.patients == 5  # PAT0-3 and PX-7
    assert corpus.counts("alpha", SeriesQuery(modality=("MR",))).series == 2
    assert corpus.counts("gamma").series == 0


def test_a_document_is_stored_as_given_and_replaced_whole(index: SeriesIndex) -> None:
    first = series(1, instance_count=10, dataset=["ds-a"])
    assert index.put("alpha", [first]) == 1
    assert index.get("alpha", uid(1)) == first
    second = series(1, instance_count=15, dataset=["ds-a", "ds-b"])
    del second["00080030 StudyTime_time"]
    index.put("alpha", [second])
    assert index.get("alpha", uid(1)) == second, "nothing of the first is left"
    assert index.search("alpha", SeriesQuery(dataset=("ds-b",))).total == 1
    assert index.counts("alpha").instances == 15
    # One project's index only: admin is written by its own call.
    assert index.get("admin", uid(1)) is None


def test_documents_are_read_many_at_once(corpus: SeriesIndex) -> None:
    wanted = [uid(n) for n in (1, 7, 8, 42)]
    assert corpus.get_many("beta", wanted) == {
        uid(n): corpus.get("beta", uid(n)) for n in (7, 8)
    }, "what the project holds, nothing of another project, no unknown series"
    assert set(corpus.get_many("alpha", wanted)) == {uid(1), uid(7)}
    assert corpus.get_many("gamma", wanted) == {}, "a project without an index holds nothing"
    assert corpus.get_many("alpha", []) == {}


def test_a_series_twice_in_one_call_is_stored_once(index: SeriesIndex) -> None:
    docs = [series(2, instance_count=3), series(2, instance_count=4, dataset=["ds-c"])]
    assert index.put("alpha", docs) == 1
    doc = index.get("alpha", uid(2))
    assert doc is not None
    assert (doc["instance_count"], doc["dataset"]) == (4, ["ds-c"])
    assert index.search("alpha", SeriesQuery()).total == 1


def test_document_without_uid_is_refused(index: SeriesIndex) -> None:
    with pytest.raises(ValueError, match="SeriesInstanceUID"):
        index.put("alpha", [{"00080060 Modality_keyword": "CT"}])


def test_delete_series(corpus: SeriesIndex) -> None:
    assert corpus.delete_series("alpha", uid(7))
    assert corpus.get("alpha", uid(7)) is None
    assert corpus.get("beta", uid(7)) is not None
    assert corpus.get("admin", uid(7))["project"] == ["beta"]  # type: ignore[index]
    assert corpus.delete_series("beta", uid(8))
    assert corpus.get("admin", uid(8)) is None  # no project left
    assert not corpus.delete_series("beta", uid(8))
    assert corpus.delete_series("admin", uid(9))
    assert corpus.get("beta", uid(9)) is None
    assert found(corpus, "admin") == {0, 1, 2, 3, 4, 5, 6, 7}


def test_concurrent_writers(index: SeriesIndex) -> None:
    threads, rounds = 8, 6
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def writer(t: int) -> None:
        try:
            barrier.wait()
            for r in range(rounds):
                own = series(200 + t, instance_count=r + 1)
                shared = series(100, instance_count=t * rounds + r)
                index.put("alpha", [own, shared])
                index.put("admin", [own])
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    for t in range(threads):
        for project in ("alpha", "admin"):
            own = index.get(project, uid(200 + t))
            assert own is not None and own["instance_count"] == rounds, "each writer's last"
    shared = index.get("alpha", uid(100))
    assert shared is not None and shared["instance_count"] % rounds == rounds - 1
    assert index.search("alpha", SeriesQuery()).total == threads + 1
    assert index.search("admin", SeriesQuery()).total == threads
