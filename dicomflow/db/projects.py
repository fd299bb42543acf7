"""Projects and datasets: names, creation, lookups and series mappings."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dicomflow.db.models import Dataset, DatasetSeries, Project, ProjectSender, SeriesProject

ADMIN_PROJECT = "admin"
KAAPANA_PREFIX = "kp-"
MAX_AE_LENGTH = 16
# A project name is an AE title that also names an index and an S3 bucket, whose rules are
# stricter than DICOM's: so lowercase letters, digits and '-'.
_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# A dataset name is any AE title: printable ASCII without backslash.
_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]+$")


class InvalidNameError(ValueError):
    """A project or dataset name that breaks the naming rules."""


class UnknownProjectError(LookupError):
    """A project that does not exist."""


#: Kinds of sender rule: a calling AE title, or a source address or network.
SENDER_KINDS = ("ae", "network")


@dataclass(frozen=True)
class ProjectInfo:
    """A project as listed to users."""

    name: str
    description: str
    created_at: datetime
    datasets: int


def normalize_ae_name(raw: str) -> str:
    """An AE title as a name: spaces trimmed, lowercase, the Kaapana ``kp-`` prefix removed."""
    name = raw.strip().lower()
    if name.startswith(KAAPANA_PREFIX) and len(name) > len(KAAPANA_PREFIX):
        name = name[len(KAAPANA_PREFIX) :]
    return name


def validate_project_name(name: str) -> str:
    """Return ``name`` if it is a valid project name, else raise :class:`InvalidNameError`."""
    if not name or len(name) > MAX_AE_LENGTH:
        raise InvalidNameError(
            f"project name {name!r} must be 1 to {MAX_AE_LENGTH} characters (a DICOM AE title)"
        )
    if not _PROJECT_RE.match(name):
        raise InvalidNameError(
            f"project name {name!r} may hold only lowercase letters, digits and '-', and must "
            "start with a letter or digit (it is an AE title and names an index and a bucket)"
        )
    return name


def validate_dataset_name(name: str) -> str:
    """Return ``name`` if it is a valid dataset name (an AE title), else raise."""
    if not name or len(name) > MAX_AE_LENGTH or not _AE_RE.match(name) or name != name.strip():
        raise InvalidNameError(
            f"dataset name {name!r} must be a DICOM AE title: 1 to {MAX_AE_LENGTH} printable "
            "characters, no backslash, no leading or trailing spaces"
        )
    return name


class ProjectStore:
    """Projects, datasets and series mappings in the platform database.

    Parameters
    ----------
    engine
        An engine on the platform database (see :func:`dicomflow.db.session.make_engine`).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create_project(self, name: str, description: str = "") -> bool:
        """Create a project; return ``False`` when it already existed (nothing changes)."""
        validate_project_name(name)
        stmt = insert(Project).values(name=name, description=description)
        with Session(self._engine) as session, session.begin():
            result = session.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def exists(self, name: str) -> bool:
        """Whether the project exists."""
        with Session(self._engine) as session:
            return session.get(Project, name) is not None

    def names(self) -> list[str]:
        """Names of every project, sorted."""
        with Session(self._engine) as session:
            return list(session.scalars(select(Project.name).order_by(Project.name)))

    def all(self) -> list[ProjectInfo]:
        """Every project with its number of datasets."""
        with Session(self._engine) as session:
            projects = session.scalars(select(Project).order_by(Project.name)).all()
            counts: dict[str, int] = {}
            for (project,) in session.execute(select(Dataset.project)):
                counts[project] = counts.get(project, 0) + 1
            return [
                ProjectInfo(p.name, p.description, p.created_at, counts.get(p.name, 0))
                for p in projects
            ]

    def ensure_dataset(self, project: str, dataset: str) -> int:
        """Create the dataset on first use; return its id.

        Raises
        ------
        UnknownProjectError
            When the project does not exist.
        """
        validate_dataset_name(dataset)
        if not self.exists(project):
            raise UnknownProjectError(f"project {project!r} does not exist")
        stmt = insert(Dataset).values(project=project, name=dataset)
        with Session(self._engine) as session, session.begin():
            session.execute(stmt.on_conflict_do_nothing(index_elements=["project", "name"]))
            return session.scalars(
                select(Dataset.id).where(Dataset.project == project, Dataset.name == dataset)
            ).one()

    def datasets(self, project: str) -> list[str]:
        """Dataset names of a project, sorted."""
        with Session(self._engine) as session:
            stmt = select(Dataset.name).where(Dataset.project == project).order_by(Dataset.name)
            return list(session.scalars(stmt))

    def map_series(self, project: str, dataset: str, series: Sequence[tuple[str, str]]) -> None:
        """Record that series (``(series uid, study uid)`` pairs) are in a project and dataset.

        One transaction for them all; repeating it changes nothing.
        """
        if not series:
            return
        dataset_id = self.ensure_dataset(project, dataset)
        with Session(self._engine) as session, session.begin():
            session.execute(
                insert(SeriesProject)
                .values(
                    [{"series_uid": s, "project": project, "study_uid": st} for s, st in series]
                )
                .on_conflict_do_nothing()
            )
            session.execute(
                insert(DatasetSeries)
                .values([{"dataset_id": dataset_id, "series_uid": s} for s, _ in series])
                .on_conflict_do_nothing()
            )

    def series_projects(self, series_uid: str) -> list[str]:
        """Projects a series is mapped to."""
        with Session(self._engine) as session:
            stmt = select(SeriesProject.project).where(SeriesProject.series_uid == series_uid)
            return sorted(session.scalars(stmt))

    def series_of(self, project: str) -> list[str]:
        """Series Instance UIDs mapped to a project."""
        with Session(self._engine) as session:
            stmt = select(SeriesProject.series_uid).where(SeriesProject.project == project)
            return sorted(session.scalars(stmt))

    def delete_project(self, name: str) -> bool:
        """Delete a project with its datasets, series mappings, members and sender rules.

        The caller removes what lives outside this database first (index copy, bucket).
        Returns ``False`` when there was no such project.
        """
        if name == ADMIN_PROJECT:
            raise InvalidNameError("the admin project holds every series and cannot be deleted")
        with Session(self._engine) as session, session.begin():
            result = session.execute(delete(Project).where(Project.name == name))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # -- the senders a project accepts (DIMSE) ------------------------------------------------

    def add_sender(self, project: str, kind: str, value: str) -> bool:
        """Accept a calling AE title or a network for ``project``; ``False`` if it was there.

        Raises
        ------
        UnknownProjectError
            When the project does not exist.
        """
        if kind not in SENDER_KINDS:
            raise ValueError(f"sender kind {kind!r}: expected one of {', '.join(SENDER_KINDS)}")
        if not self.exists(project):
            raise UnknownProjectError(f"project {project!r} does not exist")
        stmt = insert(ProjectSender).values(project=project, kind=kind, value=value)
        with Session(self._engine) as session, session.begin():
            result = session.execute(stmt.on_conflict_do_nothing())
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def remove_sender(self, project: str, kind: str, value: str) -> bool:
        """Stop accepting a sender rule; ``False`` when there was no such rule."""
        with Session(self._engine) as session, session.begin():
            result = session.execute(
                delete(ProjectSender).where(
                    ProjectSender.project == project,
                    ProjectSender.kind == kind,
                    ProjectSender.value == value,
                )
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def senders(self) -> dict[str, list[tuple[str, str]]]:
        """The sender rules: ``{project: [(kind, value), ...]}`` (projects that have some)."""
        out: dict[str, list[tuple[str, str]]] = {}
        with Session(self._engine) as session:
            rows = session.execute(
                select(ProjectSender.project, ProjectSender.kind, ProjectSender.value).order_by(
                    ProjectSender.project, ProjectSender.kind, ProjectSender.value
                )
            )
            for project, kind, value in rows:
                out.setdefault(project, []).append((kind, value))
        return out
