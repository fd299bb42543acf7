"""``dicomflow user | project | token | audit`` on the real platform database and web service."""

from __future__ import annotations

import json
import uuid

import httpx
from click.testing import CliRunner, Result

from dicomflow.cli import main
from tests.access.conftest import World


def _cli(world: World, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), obj=world.settings, input=stdin)


def test_users_projects_members_and_tokens_from_the_shell(world: World) -> None:
    tag = uuid.uuid4().hex[:6]
    name, project = f"cli-{tag}", f"cli-{tag}"
    created = _cli(world, "user", "create", name, "--password-stdin", stdin="a long password\n")
    assert created.exit_code == 0, created.output
    again = _cli(world, "user", "create", name, "--password-stdin", stdin="a long password\n")
    assert again.exit_code == 1 and "exists already" in again.output
    short = _cli(world, "user", "create", f"x{tag}", "--password-stdin", stdin="short\n")
    assert short.exit_code == 1 and "at least 10 characters" in short.output

    assert _cli(world, "project", "create", project, "--owner", name).exit_code == 0
    viewer = f"cli-viewer-{tag}"
    made = _cli(world, "user", "create", viewer, "--generate")
    assert made.exit_code == 0
    password = made.output.split("password: ", 1)[1].strip()
    added = _cli(world, "project", "member", "add", project, viewer, "--role", "viewer")
    assert added.exit_code == 0, added.output
    listed = json.loads(_cli(world, "project", "member", "list", project, "--json").output)
    assert {(m["user"], m["role"]) for m in listed} == {(name, "owner"), (viewer, "viewer")}
    bad_role = _cli(world, "project", "member", "add", project, viewer, "--role", "boss")
    assert bad_role.exit_code == 2 and "boss" in bad_role.output
    admin_project = _cli(world, "project", "member", "add", "admin", viewer, "--role", "viewer")
    assert admin_project.exit_code == 1 and "administrator instead" in admin_project.output

    # The generated password signs in; a token made in the shell works once printed.
    assert httpx.get(f"{world.url}/api/projects", auth=(viewer, password)).status_code == 200
    token_out = _cli(world, "token", "create", viewer, "--name", "shell")
    assert token_out.exit_code == 0, token_out.output
    secret = token_out.stdout.strip().splitlines()[-1]
    assert secret.startswith("dft_")
    bearer = {"Authorization": f"Bearer {secret}"}
    seen = httpx.get(f"{world.url}/api/projects", headers=bearer).json()
    assert [p["name"] for p in seen] == [project]
    tokens = json.loads(_cli(world, "token", "list", "--user", viewer, "--json").output)
    (listed_token,) = tokens
    assert secret not in json.dumps(tokens) and secret.startswith(listed_token["prefix"])
    revoked = _cli(world, "token", "revoke", str(listed_token["id"]))
    assert revoked.exit_code == 0, revoked.output
    assert httpx.get(f"{world.url}/api/projects", headers=bearer).status_code == 401

    assert _cli(world, "project", "member", "remove", project, viewer).exit_code == 0
    assert httpx.get(f"{world.url}/api/projects", auth=(viewer, password)).json() == []
    assert _cli(world, "user", "disable", viewer).exit_code == 0
    assert httpx.get(f"{world.url}/api/projects", auth=(viewer, password)).status_code == 401
    users = json.loads(_cli(world, "user", "list", "--json").output)
    assert {u["name"]: u["disabled"] for u in users}[viewer] is True
    assert _cli(world, "user", "delete", viewer, "--yes").exit_code == 0
    assert _cli(world, "project", "delete", project, "--yes").exit_code == 0
    assert project not in _cli(world, "project", "list").output

    trail = json.loads(_cli(world, "audit", "--since", "1h", "--json", "--limit", "1000").output)
    mine = [(e["action"], e["target"]) for e in trail if e["actor"].startswith("cli")]
    for action, target in [
        ("user-create", viewer),
        ("member-set", viewer),
        ("token-create", f"{viewer}: token {listed_token['id']}"),
        ("token-revoke", f"{viewer}: token {listed_token['id']}"),
        ("member-remove", viewer),
        ("user-disable", viewer),
        ("user-delete", viewer),
    ]:
        assert (action, target) in mine, (action, target)
    assert any(e["action"] == "project-delete" and e["project"] == project for e in trail)
    by_project = json.loads(_cli(world, "audit", "--project", project, "--json").output)
    assert by_project and all(e["project"] == project for e in by_project)
    bad_since = _cli(world, "audit", "--since", "yesterday")
    assert bad_since.exit_code == 2 and "--since" in bad_since.output


def test_the_last_administrator_stays(world: World) -> None:
    admins = world.manager.accounts.active_admins()
    assert admins == [world.users["admin"]], admins
    for args in (["user", "disable"], ["user", "delete", "--yes"], ["user", "admin", "--remove"]):
        refused = _cli(world, *args, world.users["admin"])
        assert refused.exit_code == 1 and "last active administrator" in refused.output


def test_a_project_holding_series_needs_force(world: World) -> None:
    refused = _cli(world, "project", "delete", world.a, "--yes")
    assert refused.exit_code == 1 and "holds 2 series" in refused.output
    assert world.manager.projects.exists(world.a)
