"""The platform's own tables: projects, datasets, which series belong where, and what each
series received: its instances and batches (the series documents are computed from these)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
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
