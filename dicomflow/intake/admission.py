"""Who may send where: the projects a door accepts, and the names it accepts them under.

Every door asks the same :class:`Admission`. It reads the project list from the platform
database and keeps the last list it read in the spool, so that while the database is away the
doors go on taking data for every project they knew: only a project that was never known is
refused (a scanner should not get errors because a database restarts; the spool holds the
data, and the pipeline catches up when the database returns).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dicomflow.db.projects import (
    ADMIN_PROJECT,
    InvalidNameError,
    normalize_ae_name,
    validate_dataset_name,
)
from dicomflow.spool import durable

__all__ = [
    "Admission",
    "AdmissionRefusedError",
    "Destination",
    "ProjectLookupError",
    "ProjectNames",
]

LOGGER = logging.getLogger(__name__)

#: Seconds a project list read from the database is trusted before it is read again.
REFRESH_SECONDS = 5.0
#: Where the last list read is kept, in the spool.
KNOWN_PROJECTS_FILE = "known-projects.json"


class ProjectNames(Protocol):
    """What admission needs of :class:`~dicomflow.db.projects.ProjectStore`."""

    def names(self) -> list[str]: ...


class ProjectLookupError(RuntimeError):
    """The project list cannot be read and no earlier list is known."""


class AdmissionRefusedError(ValueError):
    """A sender's request that no door accepts; the message says why and what to do.

    Attributes
    ----------
    unknown_project
        The refusal is for a project that does not exist (as opposed to a bad name).
    """

    def __init__(self, message: str, *, unknown_project: bool = False) -> None:
        super().__init__(message)
        self.unknown_project = unknown_project


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a sender's instances go.

    Attributes
    ----------
    project
        An existing project.
    dataset
        A valid dataset name (the dataset is created when its first series is mapped).
    routed_to_admin
        The requested project does not exist and ``route_unknown_projects_to_admin`` sent the
        instances to ``admin``.
    """

    project: str
    dataset: str
    routed_to_admin: bool = False


class Admission:
    """The admission checks every door applies before it takes an instance.

    Parameters
    ----------
    projects
        The project directory (the platform database).
    known_file
        Where the last project list read is kept (``<spool>/known-projects.json``).
    route_unknown_projects_to_admin
        Accept instances for an unknown project into ``admin`` instead of refusing them.
    clock
        Monotonic seconds (tests step it).
    """

    def __init__(
        self,
        projects: ProjectNames,
        known_file: Path,
        *,
        route_unknown_projects_to_admin: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._projects = projects
        self._known_file = known_file
        self.route_unknown_projects_to_admin = route_unknown_projects_to_admin
        self._clock = clock
        self._lock = threading.Lock()
        self._names: frozenset[str] | None = None
        self._read_at = float("-inf")
        self._database_away = False

    def known_projects(self, *, fresh: bool = False) -> frozenset[str]:
        """The projects that exist, as far as the doors can tell.

        Read from the database when the last read is older than :data:`REFRESH_SECONDS` (or
        ``fresh``); while the database cannot be reached, the last list read (kept in the
        spool, so it outlives a restart).

        Raises
        ------
        ProjectLookupError
            When the database cannot be reached and no list was ever read.
        """
        with self._lock:
            stale = self._clock() - self._read_at >= REFRESH_SECONDS
            if self._names is not None and not (fresh or stale):
                return self._names
            try:
                names = frozenset(self._projects.names())
            except Exception as exc:  # any failure of the database: fall back to what we knew
                return self._last_known(exc)
            if self._database_away:
                LOGGER.info("project list readable again: %d projects", len(names))
                self._database_away = False
            if names != self._names:
                self._keep(names)
            self._names, self._read_at = names, self._clock()
            return names

    def _last_known(self, exc: Exception) -> frozenset[str]:
        if self._names is None:
            self._names = self._read_kept()
        if self._names is None:
            raise ProjectLookupError(
                f"the platform database cannot be reached and no project list was kept: {exc}"
            ) from exc
        if not self._database_away:
            LOGGER.warning(
                "project list unreadable (%s); accepting the %d projects known before",
                exc,
                len(self._names),
            )
            self._database_away = True
        # Try the database again soon, not on every association.
        self._read_at = self._clock()
        return self._names

    def _keep(self, names: frozenset[str]) -> None:
        try:
            durable.write_json(self._known_file, sorted(names))
        except OSError as exc:
            LOGGER.warning("cannot keep the project list in %s: %s", self._known_file, exc)

    def _read_kept(self) -> frozenset[str] | None:
        try:
            data = json.loads(self._known_file.read_text())
        except (OSError, ValueError):
            return None
        return frozenset(str(n) for n in data) if isinstance(data, list) else None

    def project_exists(self, name: str) -> bool:
        """Whether a project is known (a just-created one too: an unknown name reads again)."""
        if name in self.known_projects():
            return True
        return name in self.known_projects(fresh=True)

    def destination(self, project: str, dataset: str) -> Destination:
        """Check a sender's project and dataset names.

        Parameters
        ----------
        project
            The project as the sender named it (an AE title, a URL segment, an option):
            trimmed, lowercased and stripped of Kaapana's ``kp-`` prefix.
        dataset
            The dataset as the sender named it; for DIMSE the calling AE title (normalised
            like the project, ``unknown`` when empty).

        Raises
        ------
        AdmissionRefusedError
            For an unknown project (unless routed to ``admin``) or an invalid dataset name.
        ProjectLookupError
            When no project list can be had at all.
        """
        name = normalize_ae_name(project)
        try:
            validate_dataset_name(dataset)
        except InvalidNameError as exc:
            raise AdmissionRefusedError(str(exc)) from None
        if self.project_exists(name):
            return Destination(name, dataset)
        if self.route_unknown_projects_to_admin:
            return Destination(ADMIN_PROJECT, dataset, routed_to_admin=True)
        known = ", ".join(sorted(self.known_projects())) or "none"
        raise AdmissionRefusedError(
            f"project {name!r} does not exist (existing projects: {known}); "
            "create it with `dicomflow project create`",
            unknown_project=True,
        )
