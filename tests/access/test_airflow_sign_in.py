"""Airflow's sign-in takes platform administrators with their platform password, nobody else."""

from __future__ import annotations

import uuid

import httpx

from dicomflow.access.policy import Role
from tests.access.conftest import PASSWORD, World
from tests.conftest import AirflowServer


def _token(airflow: AirflowServer, user: str, password: str) -> httpx.Response:
    return httpx.post(
        f"{airflow.base_url}/auth/token", json={"username": user, "password": password}, timeout=30
    )


def test_administrators_sign_in_to_airflow_with_their_platform_account(
    world: World, airflow: AirflowServer
) -> None:
    admin = _token(airflow, world.users["admin"], world.settings.admin_password)
    assert admin.status_code == 201, admin.text
    bearer = {"Authorization": f"Bearer {admin.json()['access_token']}"}
    dags = httpx.get(f"{airflow.base_url}/api/v2/dags", headers=bearer, timeout=30)
    assert dags.status_code == 200
    # A new password is the Airflow password at once: nothing to keep in step.
    name = f"airflow-admin-{uuid.uuid4().hex[:6]}"
    world.manager.create_user("test", name, PASSWORD, admin=True)
    assert _token(airflow, name, PASSWORD).status_code == 201
    world.manager.set_password("test", name, "a brand new password")
    assert _token(airflow, name, PASSWORD).status_code == 401
    assert _token(airflow, name, "a brand new password").status_code == 201
    world.manager.set_disabled("test", name, True)
    assert _token(airflow, name, "a brand new password").status_code == 401
    # The platform's own login (DAG runs from the web service and the dispatcher) still works.
    service = _token(airflow, airflow.username, airflow.password)
    assert service.status_code == 201


def test_everyone_else_is_refused_and_counted(world: World, airflow: AirflowServer) -> None:
    owner = _token(airflow, world.users["owner"], PASSWORD)  # owner of project A
    assert owner.status_code == 401 and "platform administrators" in owner.text
    assert world.manager.accounts.get(world.users["owner"]).roles[world.a] == Role.OWNER.value
    wrong = _token(airflow, world.users["admin"], "not the password")
    assert wrong.status_code == 401
    events = world.manager.audit.store.query(actor=world.users["admin"], action="sign-in")
    assert any(e.outcome == "failed" and e.detail.startswith("airflow") for e in events)
    limit = world.settings.auth.account_failures
    name = f"airflow-guess-{uuid.uuid4().hex[:6]}"
    for _ in range(limit):
        assert _token(airflow, name, "guess").status_code == 401
    throttled = _token(airflow, name, "guess")
    assert throttled.status_code == 429 and "too many failed sign-ins" in throttled.text
