"""The one client of Airflow's REST API (v2): tokens, triggering and reading DAG runs."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from dicomflow.config import Settings

__all__ = [
    "AirflowClient",
    "AirflowError",
    "AirflowRequestError",
    "AirflowUnavailableError",
    "TriggerResult",
]


class AirflowError(Exception):
    """Base class of errors talking to Airflow."""


class AirflowUnavailableError(AirflowError):
    """Airflow cannot be reached or answered with a server error; retrying may help."""


class AirflowRequestError(AirflowError):
    """Airflow refused a request (4xx other than the handled ones); retrying will not help.

    Attributes
    ----------
    status_code
        The HTTP status.
    detail
        Airflow's explanation.
    """

    def __init__(self, message: str, status_code: int, detail: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


@dataclass(frozen=True)
class TriggerResult:
    """Outcome of :meth:`AirflowClient.trigger_dag_run`.

    Attributes
    ----------
    dag_id, run_id
        The run.
    created
        ``False`` when the run already existed (HTTP 409): an earlier trigger got through.
    """

    dag_id: str
    run_id: str
    created: bool


class AirflowClient:
    """Talks to Airflow's API server with a cached JWT that is refreshed on 401.

    Parameters
    ----------
    base_url
        Root of the API server, e.g. ``http://127.0.0.1:8080``.
    username, password
        Credentials for ``POST /auth/token``.
    timeout
        Seconds per HTTP request.
    """

    def __init__(
        self, base_url: str, username: str, password: str, *, timeout: float = 10.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AirflowClient:
        """A client for the platform's Airflow, with the platform's own login to it."""
        return cls(settings.airflow.base_url, settings.airflow.username, settings.airflow.password)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = f"{self.base_url}{path}"
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AirflowUnavailableError(
                f"Airflow at {url} is unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code >= 500:
            raise AirflowUnavailableError(
                f"Airflow at {url} answered HTTP {response.status_code}: {_detail(response)}"
            )
        return response

    def token(self, *, refresh: bool = False) -> str:
        """A valid access token, from the cache unless ``refresh``."""
        with self._lock:
            if self._token is None or refresh:
                response = self._send(
                    "POST",
                    "/auth/token",
                    json={"username": self._username, "password": self._password},
                )
                if response.status_code not in (200, 201):
                    raise AirflowRequestError(
                        f"Airflow at {self.base_url}/auth/token refused the login of "
                        f"{self._username!r}: HTTP {response.status_code}: {_detail(response)}",
                        response.status_code,
                        _detail(response),
                    )
                self._token = str(response.json()["access_token"])
            return self._token

    def _api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._send(
            method, path, headers={"Authorization": f"Bearer {self.token()}"}, **kwargs
        )
        if response.status_code == 401:
            # The cached token expired or the server restarted with a new secret.
            token = self.token(refresh=True)
            response = self._send(
                method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs
            )
        return response

    def trigger_dag_run(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> TriggerResult:
        """Create a DAG run; an existing run with the same id counts as success.

        Parameters
        ----------
        dag_id
            The DAG.
        run_id
            A deterministic id (e.g. ``batch-<batch id>``) so a retried trigger is idempotent.
        conf
            The run's configuration.

        Raises
        ------
        AirflowUnavailableError
            When Airflow cannot be reached or fails; retry later.
        AirflowRequestError
            When Airflow refuses the request (unknown DAG, bad conf, bad credentials).
        """
        response = self._api(
            "POST",
            f"/api/v2/dags/{dag_id}/dagRuns",
            json={"dag_run_id": run_id, "logical_date": None, "conf": conf},
        )
        if response.status_code in (200, 201):
            return TriggerResult(dag_id, run_id, created=True)
        if response.status_code == 409:
            return TriggerResult(dag_id, run_id, created=False)
        raise _refused(response, f"trigger DAG {dag_id!r} (run {run_id!r})")

    def get_dag_run(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        """A DAG run as Airflow describes it, or ``None`` when it does not exist."""
        response = self._api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _refused(response, f"read run {run_id!r} of DAG {dag_id!r}")
        return dict(response.json())

    def list_dag_runs(
        self, dag_id: str, *, limit: int = 100, states: tuple[str, ...] = ()
    ) -> list[dict[str, Any]]:
        """The latest DAG runs of a DAG (only those in ``states`` when given)."""
        params: dict[str, Any] = {"limit": limit, "order_by": "-run_after"}
        if states:
            params["state"] = list(states)
        response = self._api("GET", f"/api/v2/dags/{dag_id}/dagRuns", params=params)
        if response.status_code != 200:
            raise _refused(response, f"list runs of DAG {dag_id!r}")
        return list(response.json().get("dag_runs", []))

    def dag_ids(self) -> set[str]:
        """Ids of the DAGs Airflow has parsed."""
        response = self._api("GET", "/api/v2/dags", params={"limit": 1000})
        if response.status_code != 200:
            raise _refused(response, "list DAGs")
        return {str(d["dag_id"]) for d in response.json().get("dags", [])}

    def clear_failed_tasks(self, dag_id: str, run_id: str) -> list[str]:
        """Run a DAG run's failed tasks again (and those that did not run because of them).

        Returns
        -------
        list of str
            The task ids cleared (empty when nothing had failed).

        Raises
        ------
        AirflowUnavailableError
            When Airflow cannot be reached or fails.
        AirflowRequestError
            When Airflow refuses (e.g. the run does not exist).
        """
        response = self._api(
            "POST",
            f"/api/v2/dags/{dag_id}/clearTaskInstances",
            json={
                "dag_run_id": run_id,
                "dry_run": False,
                "only_failed": True,
                "reset_dag_runs": True,
            },
        )
        if response.status_code != 200:
            raise _refused(response, f"clear the failed tasks of run {run_id!r}")
        return [str(t["task_id"]) for t in response.json().get("task_instances", [])]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The task instances of a DAG run (state, start and end dates, try number)."""
        response = self._api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        if response.status_code != 200:
            raise _refused(response, f"list task instances of run {run_id!r}")
        return list(response.json().get("task_instances", []))


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:500]
    return str(body)[:500]


def _refused(response: httpx.Response, action: str) -> AirflowRequestError:
    detail = _detail(response)
    return AirflowRequestError(
        f"Airflow at {response.request.url} refused to {action}: "
        f"HTTP {response.status_code}: {detail}",
        response.status_code,
        detail,
    )
