"""The platform's own tables: projects, datasets, which series belong where, and what each
series received: its instances and batches (the series documents are computed from these) and
its validation findings;
the people: accounts, project memberships, sign-in sessions, API tokens, sign-in throttling and
the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of the platform database."""


class Project(Base):
    """A project: the called AE title of a sender, an index and a bucket of its own."""

    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Dataset(Base):
    """A named collection inside a project: the calling AE title of a sender."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("project", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(ForeignKey("projects.name", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class SeriesProject(Base):
    """A series belongs to a project (a series may be in several projects, once each)."""

    __tablename__ = "series_projects"

    series_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(
        ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True
    )
    study_uid: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class DatasetSeries(Base):
    """A series is a member of a dataset (once)."""

    __tablename__ = "dataset_series"

    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    series_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class PendingOverlay(Base):
    """A SEG or RTSTRUCT whose thumbnail is a placeholder until its image series arrives."""

    __tablename__ = "pending_overlays"

    annotation_series_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    referenced_series_uid: Mapped[str] = mapped_column(String(64), index=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    projects: Mapped[str] = mapped_column(Text)  # space-separated project names
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class SeriesInstance(Base):
    """An instance of a series, recorded once however often it was sent."""

    __tablename__ = "series_instances"

    series_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64), default="")
    instance_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: The batch it first came in.
    batch_id: Mapped[str] = mapped_column(String(64))


class SeriesBatch(Base):
    """A batch that brought instances of a series: where to, from whom, and whether archived."""

    __tablename__ = "series_batches"

    series_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(16))
    dataset: Mapped[str] = mapped_column(String(64))
    instances: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    calling_ae: Mapped[str] = mapped_column(String(64), default="")
    called_ae: Mapped[str] = mapped_column(String(64), default="")
    sender: Mapped[str] = mapped_column(String(255), default="")
    #: The PACS confirmed it holds the batch's instances of the series.
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Why the batch's processing failed (``step: reason``); cleared by a retry or success.
    failure: Mapped[str | None] = mapped_column(Text, nullable=True)


class SeriesValidationRecord(Base):
    """A series' validation findings so far: every lane's and batch's, merged per instance."""

    __tablename__ = "series_validations"

    series_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: ``SeriesValidation.to_json()`` as JSON text (read and written whole, never queried).
    record: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Account(Base):
    """A person (or the CLI's service account) who signs in to the platform."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: argon2id hash (PHC string); ``None``: the account cannot sign in with a password.
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Platform administrator: users, projects, every project's data, Airflow.
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    #: A disabled account keeps its history but signs in nowhere; its sessions and tokens stop.
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    password_changed_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )


class Membership(Base):
    """A user's role in a project (``owner``, ``uploader`` or ``viewer``), once per project."""

    __tablename__ = "project_members"

    project: Mapped[str] = mapped_column(
        ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True
    )
    user_name: Mapped[str] = mapped_column(
        ForeignKey("users.name", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class WebSession(Base):
    """A signed-in browser: the cookie holds a random secret, the table its SHA-256 only."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), index=True)
    #: The page's CSRF token: every state-changing request of the session must carry it.
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    #: The absolute end (``auth.session_hours`` after sign-in).
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Refreshed at most once a minute; a session idle for ``auth.idle_minutes`` ends.
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    address: Mapped[str] = mapped_column(String(64), default="")


class ApiToken(Base):
    """A personal API token: shown once at creation, kept as its SHA-256 only."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    #: The token's first characters, to tell tokens apart in lists.
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SignInFailures(Base):
    """Failed sign-ins of one account name or one address within the current window."""

    __tablename__ = "sign_in_failures"

    #: ``account`` or ``address``.
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    """Who did what, when, from where: one row per event, never changed."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_project_at", "project", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, index=True)
    #: The user name (no foreign key: the trail outlives the account), ``-`` when unknown.
    actor: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(32))
    project: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: What was acted on: a user, a token, an upload, a run.
    target: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    address: Mapped[str] = mapped_column(String(64), default="")
    #: ``ok``, ``failed`` (e.g. a wrong password) or ``refused`` (throttled, not allowed).
    outcome: Mapped[str] = mapped_column(String(16), default="ok")


class ProjectSender(Base):
    """A DICOM sender a project accepts: a calling AE title or a source network.

    A project without any accepts every sender (as Kaapana does); one with some accepts an
    association only when its calling AE title or its address matches one of them.
    """

    __tablename__ = "project_senders"

    project: Mapped[str] = mapped_column(
        ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True
    )
    #: ``ae`` (a calling AE title) or ``network`` (an address or CIDR network).
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
