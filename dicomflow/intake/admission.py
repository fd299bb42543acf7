"""Who may send where: the projects a door accepts, and the names it accepts them under.

Every door asks the same :class:`Admission`. It reads the project list from the platform
database and keeps the last list it read in the spool, so that while the database is away the
doors go on taking data for every project they knew: only a project that was never known is
refused (a scanner should not get errors because a database restarts; the spool holds the
data, and the pipeline catches up when the database returns).

A project may also list the DICOM senders it accepts (calling AE titles, source networks;
``dicomflow project sender add``). A door that knows its sender (the DIMSE receiver) passes
the calling AE title and the peer's address, and a project with a list accepts only a sender
that matches an entry; a project without one accepts every sender, as Kaapana does. The list
is read and kept with the project list.
"""

from __future__ import annotations

import ipaddress
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

    def senders(self) -> dict[str, list[tuple[str, str]]]: ...


@dataclass(frozen=True)
class SenderRules:
    """The senders one project accepts (an entry of either kind is enough)."""

    ae_titles: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, rules: list[tuple[str, str]] | list[list[str]]) -> SenderRules:
        """From ``(kind, value)`` pairs as the project store lists them."""
        titles = frozenset(v.strip().upper() for k, v in rules if k == "ae")
        networks = []
        for kind, value in rules:
            if kind == "network":
                try:
                    networks.append(ipaddress.ip_network(value, strict=False))
                except ValueError:
                    LOGGER.warning("ignoring sender rule %r: not an address or network", value)
        return cls(titles, tuple(networks))

    def accepts(self, calling_ae: str | None, peer_host: str | None) -> bool:
        """Whether a sender with this calling AE title and address matches an entry."""
        if calling_ae is not None and calling_ae.strip().upper() in self.ae_titles:
            return True
        if peer_host:
            try:
                address = ipaddress.ip_address(peer_host)
            except ValueError:
                return False
            return any(address in network for network in self.networks)
        return False

    def describe(self) -> str:
        """The entries, for a refusal's log line."""
        parts = [f"AE {t}" for t in sorted(self.ae_titles)] + [str(n) for n in self.networks]
        return ", ".join(parts)


class ProjectLookupError(RuntimeError):
    """The project list cannot be read and no earlier list is known."""


class AdmissionRefusedError(ValueError):
    """A sender's request that no door accepts; the message says why and what to do.

    Attributes
    ----------
    unknown_project
        The refusal is for a project that does not exist (as opposed to a bad name).
    sender_refused
        The project exists but does not list this sender (calling AE title, address).
    """

    def __init__(
        self, message: str, *, unknown_project: bool = False, sender_refused: bool = False
    ) -> None:
        super().__init__(message)
        self.unknown_project = unknown_project
        self.sender_refused = sender_refused


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
        self._senders: dict[str, SenderRules] = {}
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
                raw_senders = self._projects.senders()
            except Exception as exc:  # any failure of the database: fall back to what we knew
                return self._last_known(exc)
            if self._database_away:
                LOGGER.info("project list readable again: %d projects", len(names))
                self._database_away = False
            senders = {p: SenderRules.parse(r) for p, r in raw_senders.items() if r}
            if names != self._names or senders != self._senders:
                self._keep(names, raw_senders)
            self._names, self._senders, self._read_at = names, senders, self._clock()
            return names

    def _last_known(self, exc: Exception) -> frozenset[str]:
        if self._names is None:
            kept = self._read_kept()
            if kept is not None:
                self._names, self._senders = kept
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

    def _keep(self, names: frozenset[str], senders: dict[str, list[tuple[str, str]]]) -> None:
        kept = {"projects": sorted(names), "senders": {p: r for p, r in senders.items() if r}}
        try:
            durable.write_json(self._known_file, kept)
        except OSError as exc:
            LOGGER.warning("cannot keep the project list in %s: %s", self._known_file, exc)

    def _read_kept(self) -> tuple[frozenset[str], dict[str, SenderRules]] | None:
        try:
            data = json.loads(self._known_file.read_text())
        except (OSError, ValueError):
            return None
        if isinstance(data, list):  # kept by a version without sender rules
            return frozenset(str(n) for n in data), {}
        if not isinstance(data, dict) or not isinstance(data.get("projects"), list):
            return None
        raw = data.get("senders")
        senders: dict[str, object] = raw if isinstance(raw, dict) else {}
        return (
            frozenset(str(n) for n in data["projects"]),
            {str(p): SenderRules.parse(r) for p, r in senders.items() if isinstance(r, list)},
        )

    def project_exists(self, name: str) -> bool:
        """Whether a project is known (a just-created one too: an unknown name reads again)."""
        if name in self.known_projects():
            return True
        return name in self.known_projects(fresh=True)

    def destination(
        self,
        project: str,
        dataset: str,
        *,
        calling_ae: str | None = None,
        peer_host: str | None = None,
    ) -> Destination:
        """Check a sender's project and dataset names (and the sender, when the door knows it).

        Parameters
        ----------
        project
            The project as the sender named it (an AE title, a URL segment, an option):
            trimmed, lowercased and stripped of Kaapana's ``kp-`` prefix.
        dataset
            The dataset as the sender named it; for DIMSE the calling AE title (normalised
            like the project, ``unknown`` when empty).
        calling_ae, peer_host
            The sender's calling AE title and address (DIMSE): checked against the project's
            sender list when it has one.

        Raises
        ------
        AdmissionRefusedError
            For an unknown project (unless routed to ``admin``), an invalid dataset name, or a
            sender the project does not list (``sender_refused``).
        ProjectLookupError
            When no project list can be had at all.
        """
        name = normalize_ae_name(project)
        try:
            validate_dataset_name(dataset)
        except InvalidNameError as exc:
            raise AdmissionRefusedError(str(exc)) from None
        if self.project_exists(name):
            self._check_sender(name, calling_ae, peer_host)
            return Destination(name, dataset)
        if self.route_unknown_projects_to_admin:
            return Destination(ADMIN_PROJECT, dataset, routed_to_admin=True)
        known = ", ".join(sorted(self.known_projects())) or "none"
        raise AdmissionRefusedError(
            f"project {name!r} does not exist (existing projects: {known}); "
            "create it with `dicomflow project create`",
            unknown_project=True,
        )

    def _check_sender(self, project: str, calling_ae: str | None, peer_host: str | None) -> None:
        if calling_ae is None and peer_host is None:
            return  # a door without DICOM senders (STOW-RS, imports): users are checked there
        with self._lock:
            rules = self._senders.get(project)
        if rules is None or rules.accepts(calling_ae, peer_host):
            return
        raise AdmissionRefusedError(
            f"project {project!r} does not accept sender {calling_ae!r} from {peer_host}: it "
            f"accepts {rules.describe()} (`dicomflow project sender add {project} --ae ...`)",
            sender_refused=True,
        )
