"""The search REST API over a real index and project store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dicomflow.access.policy import Principal
from dicomflow.db.projects import ProjectStore
from dicomflow.index.base import SeriesIndex
from dicomflow.web.auth import principal_of
from dicomflow.web.search import make_search_router
from tests.index.samples import series, store, uid


@pytest.fixture
def client(postgres_index: SeriesIndex, project_store: ProjectStore) -> Iterator[TestClient]:
    project_store.ensure_dataset("alpha", "ds-a")
    project_store.ensure_dataset("alpha", "empty-ds")
    store(postgres_index, "alpha", [series(n) for n in range(5)])
    store(
        postgres_index,
        "beta",
        [series(9, dataset=["beta-ds"], **{"00080060 Modality_keyword": "MR"})],
    )
    app = FastAPI()
    app.include_router(make_search_router(postgres_index, project_store))
    # The API's own behaviour, as an administrator sees it (access: tests/access).
    app.dependency_overrides[principal_of] = lambda: Principal("rest-tests", is_admin=True)
    with TestClient(app) as test_client:
        yield test_client


def test_search_defaults_to_admin(client: TestClient) -> None:
    response = client.get("/api/series")
    assert response.status_code == 200
    body = response.json()
    assert body["project"] == "admin"
    assert body["total"] == 6
    assert body["facets"]["project"] == {"alpha": 5, "beta": 1}
    assert body["items"][0]["0020000E SeriesInstanceUID_keyword"] == uid(9)


def test_search_filters_paging_and_project(client: TestClient) -> None:
    response = client.get(
        "/api/series", params={"project": "alpha", "modality": "ct", "page": 2, "size": 2}
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["page"], body["size"]) == (5, 2, 2)
    assert [d["0020000E SeriesInstanceUID_keyword"] for d in body["items"]] == [uid(2), uid(1)]
    assert client.get("/api/series", params={"project": "beta", "q": "doe"}).json()["total"] == 0
    response = client.get("/api/series", params=[("dataset", "beta-ds"), ("dataset", "ds-a")])
    assert response.json()["total"] == 6


@pytest.mark.parametrize(
    ("params", "parameter", "message"),
    [
        ({"from": "2024-13-01"}, "from", "from: '2024-13-01' is not a date YYYY-MM-DD"),
        ({"to": "20240101"}, "to", "to: '20240101' is not a date YYYY-MM-DD"),
        ({"from": "2024-02-01", "to": "2024-01-01"}, "to", "to: 2024-01-01 is before from"),
        ({"modalty": "CT"}, "modalty", "modalty: unknown query parameter"),
        ({"size": "0"}, "size", "size: 0 must be between 1 and 1000"),
        ({"size": "many"}, "size", "size: 'many' is not a whole number"),
        ({"page": "0"}, "page", "page: 0 must be 1 or more"),
        ({"page": "500", "size": "1000"}, "page", "reaches past result 10000"),
        ({"has_errors": "maybe"}, "has_errors", "has_errors: 'maybe' is not true or false"),
        ({"sort": "colour"}, "sort", "sort: 'colour' is not one of"),
        ({"order": "up"}, "order", "order: 'up' is not 'asc' or 'desc'"),
        ({"q": "^^ **"}, "q", "q: '^^ **' holds no word"),
    ],
)
def test_bad_parameters_answer_400(
    client: TestClient, params: dict[str, str], parameter: str, message: str
) -> None:
    response = client.get("/api/series", params=params)
    assert response.status_code == 400
    assert response.json()["parameter"] == parameter
    assert message in response.json()["detail"]


def test_repeated_single_parameter_is_400(client: TestClient) -> None:
    response = client.get("/api/series", params=[("project", "alpha"), ("project", "beta")])
    assert response.status_code == 400
    assert response.json()["parameter"] == "project"
    response = client.get("/api/series", params=[("from", "2020-01-01"), ("from", "2021-01-01")])
    assert response.status_code == 400
    assert response.json()["parameter"] == "from"


def test_unknown_project_is_404(client: TestClient) -> None:
    response = client.get("/api/series", params={"project": "gamma"})
    assert response.status_code == 404
    assert response.json()["parameter"] == "project"
    assert client.get("/api/projects/gamma/datasets").status_code == 404


def test_one_series(client: TestClient) -> None:
    response = client.get(f"/api/series/{uid(9)}", params={"project": "beta"})
    assert response.status_code == 200
    assert response.json()["dataset"] == ["beta-ds"]
    assert client.get(f"/api/series/{uid(9)}").status_code == 200
    assert client.get(f"/api/series/{uid(9)}", params={"project": "alpha"}).status_code == 404
    response = client.get(f"/api/series/{uid(9)}", params={"projct": "beta"})
    assert response.status_code == 400
    assert response.json()["parameter"] == "projct"


def test_projects_and_datasets(client: TestClient) -> None:
    names = [p["name"] for p in client.get("/api/projects").json()]
    assert {"admin", "alpha", "beta"} <= set(names)
    alpha = next(p for p in client.get("/api/projects").json() if p["name"] == "alpha")
    assert alpha["datasets"] == 2
    datasets = client.get("/api/projects/alpha/datasets").json()
    assert datasets == [{"name": "ds-a", "series": 5}, {"name": "empty-ds", "series": 0}]
    assert client.get("/api/projects/admin/datasets").json() == [
        {"name": "beta-ds", "series": 1},
        {"name": "ds-a", "series": 5},
    ]
    assert client.get("/api/projects", params={"x": "1"}).status_code == 400
