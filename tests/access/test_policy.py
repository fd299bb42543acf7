"""The access policy on its own: what each role may do, in its project and elsewhere."""

from __future__ import annotations

import pytest

from dicomflow.access.policy import POLICY, AccessDeniedError, Action, Principal, Role

ADMIN = Principal("ada", is_admin=True)
OWNER = Principal("olga", roles={"lung": Role.OWNER})
UPLOADER = Principal("ulf", roles={"lung": Role.UPLOADER, "brain": Role.VIEWER})
VIEWER = Principal("vic", roles={"lung": Role.VIEWER})
STRANGER = Principal("sam", roles={"brain": Role.OWNER})

#: (action, who may take it in project "lung").
TABLE = [
    (Action.READ, {"ada", "olga", "ulf", "vic"}),
    (Action.UPLOAD, {"ada", "olga", "ulf"}),
    (Action.IMPORT, {"ada", "olga", "ulf"}),
    (Action.MANAGE_MEMBERS, {"ada", "olga"}),
    (Action.DELETE_PROJECT, {"ada", "olga"}),
]
EVERYONE = [ADMIN, OWNER, UPLOADER, VIEWER, STRANGER]


@pytest.mark.parametrize(("action", "allowed"), TABLE, ids=[a.value for a, _ in TABLE])
def test_each_role_may_what_the_table_says(action: Action, allowed: set[str]) -> None:
    for who in EVERYONE:
        assert POLICY.may(who, action, "lung") == (who.name in allowed), (who.name, action)


def test_platform_actions_and_the_admin_project_are_the_administrators() -> None:
    for action in (
        Action.CREATE_PROJECT,
        Action.MANAGE_USERS,
        Action.READ_AUDIT,
        Action.USE_AIRFLOW,
    ):
        assert [w.name for w in EVERYONE if POLICY.may(w, action)] == ["ada"]
    # admin holds every series: even an owner elsewhere may not read through it.
    assert [w.name for w in EVERYONE if POLICY.may(w, Action.READ, "admin")] == ["ada"]
    with pytest.raises(ValueError, match="needs a project"):
        POLICY.may(VIEWER, Action.READ)


def test_a_denial_says_whether_the_project_may_be_seen() -> None:
    with pytest.raises(AccessDeniedError) as hidden:
        POLICY.check(STRANGER, Action.UPLOAD, "lung")
    assert hidden.value.hidden and str(hidden.value) == "project 'lung' does not exist"
    with pytest.raises(AccessDeniedError) as shown:
        POLICY.check(VIEWER, Action.UPLOAD, "lung")
    assert not shown.value.hidden and "role: viewer" in str(shown.value)
    assert POLICY.visible(UPLOADER, ["brain", "lung", "heart"]) == ["brain", "lung"]
    assert POLICY.allowed(UPLOADER, Action.UPLOAD, ["brain", "lung"]) == ["lung"]
