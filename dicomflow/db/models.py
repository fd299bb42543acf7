"""The platform's own tables: projects, datasets and which series belong where."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
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
