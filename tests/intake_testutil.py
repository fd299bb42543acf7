"""Sessions into a spool as the doors open them, for tests that bypass the doors."""

from __future__ import annotations

from dicomflow.intake.admission import KNOWN_PROJECTS_FILE, Admission, Destination, ProjectNames
from dicomflow.intake.session import IntakeSession
from dicomflow.spool.records import Door, Origin
from dicomflow.spool.store import Spool

#: A DIMSE sender as tests pose it.
TEST_ORIGIN = Origin(Door.DIMSE, "127.0.0.1:40000", "TESTS", "ADMIN")


def open_session(
    spool: Spool, project: str = "admin", dataset: str = "tests", origin: Origin = TEST_ORIGIN
) -> IntakeSession:
    """A session into ``project``/``dataset``, admitted as a door would admit it."""
    return IntakeSession(spool, Destination(project, dataset), origin)


def admission_for(
    spool: Spool, projects: ProjectNames, *, route_unknown_projects_to_admin: bool = False
) -> Admission:
    """The admission a door of this spool applies, over ``projects``."""
    return Admission(
        projects,
        spool.root / KNOWN_PROJECTS_FILE,
        route_unknown_projects_to_admin=route_unknown_projects_to_admin,
    )
