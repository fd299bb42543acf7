"""The connections of one process to the services the platform talks to, built once.

Like an Airflow hook, a :class:`Platform` owns its connections: each client is made when it is
first asked for and kept for the life of the process (or of a task), and :meth:`close` releases
them all. The pipeline's steps, the dispatcher, the web service and the CLI take one instead of
building an engine, an index or a PACS client per call.

The doors' intake (:mod:`dicomflow.intake`) takes its few collaborators explicitly instead:
a receiver process must not load index, PACS or object-store code.
"""

from __future__ import annotations

from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING

from dicomflow.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from dicomflow.airflow_api.client import AirflowClient
    from dicomflow.db.overlays import OverlayQueue
    from dicomflow.db.projects import ProjectStore
    from dicomflow.index.base import SeriesIndex
    from dicomflow.pacs.client import DicomWebClient
    from dicomflow.spool.store import Spool
    from dicomflow.storage.client import ObjectStore

__all__ = ["Platform"]


class Platform:
    """The platform's services as this process reaches them.

    Parameters
    ----------
    settings
        The platform settings.

    Examples
    --------
    >>> with Platform(load_settings()) as platform:  # doctest: +SKIP
    ...     platform.index.get("admin", series_uid)
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def spool(self) -> Spool:
        """The spool (on this host's disk)."""
        from dicomflow.spool.store import Spool

        return Spool.from_settings(self.settings)

    @cached_property
    def engine(self) -> Engine:
        """An engine on the platform database."""
        from dicomflow.db.session import make_engine

        return make_engine(self.settings.platform_db_url)

    @cached_property
    def projects(self) -> ProjectStore:
        """Projects, datasets and series mappings."""
        from dicomflow.db.projects import ProjectStore

        return ProjectStore(self.engine)

    @cached_property
    def overlays(self) -> OverlayQueue:
        """Annotations waiting for the image series they are drawn over."""
        from dicomflow.db.overlays import OverlayQueue

        return OverlayQueue(self.engine)

    @cached_property
    def index(self) -> SeriesIndex:
        """The series index the settings choose (sharing :attr:`engine` when embedded)."""
        from dicomflow.index import open_index

        return open_index(self.settings, engine=self.engine)

    @cached_property
    def objects(self) -> ObjectStore:
        """The object store (thumbnails, reports, uploads)."""
        from dicomflow.storage.client import ObjectStore

        return ObjectStore.from_settings(self.settings)

    @cached_property
    def pacs(self) -> DicomWebClient:
        """The PACS's DICOMweb client."""
        from dicomflow.pacs.client import DicomWebClient

        return DicomWebClient.from_settings(self.settings)

    @cached_property
    def airflow(self) -> AirflowClient:
        """Airflow's REST API."""
        from dicomflow.airflow_api.client import AirflowClient

        return AirflowClient.from_settings(self.settings)

    def close(self) -> None:
        """Release every connection made; the platform may be used again afterwards."""
        for name in ("index", "pacs", "airflow"):
            client = self.__dict__.pop(name, None)
            if client is not None:
                client.close()
        for name in ("projects", "overlays", "objects", "spool"):
            self.__dict__.pop(name, None)
        engine = self.__dict__.pop("engine", None)
        if engine is not None:
            engine.dispose()

    def __enter__(self) -> Platform:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
