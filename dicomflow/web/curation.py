"""Deleting series, studies and datasets over the REST API (the series page's button uses it).

Routes (mounted behind the login)::

    DELETE /api/series/{uid}?project=                 one series
    DELETE /api/studies/{uid}?project=                every series of a study
    DELETE /api/projects/{project}/datasets/{name}    a dataset and its series

The project's owners (and administrators) may delete (:attr:`Action.DELETE_DATA`); a viewer
or uploader gets 403, a user who may not read the project 404. A series a run or an import
still works on answers 409 with the batches named, and nothing is deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from dicomflow.access.policy import Action, Principal
from dicomflow.config import Settings
from dicomflow.curation.deletion import (
    DeletionReport,
    NothingToDeleteError,
    SeriesInUseError,
    delete_dataset,
    delete_series,
    delete_study,
)
from dicomflow.db.projects import ADMIN_PROJECT, ProjectStore
from dicomflow.pacs.client import PacsError
from dicomflow.platform import Platform
from dicomflow.storage.client import ObjectStoreError
from dicomflow.web.auth import client_address, principal_of
from dicomflow.web.guard import require

__all__ = ["make_curation_router"]

_user = Depends(principal_of)

Deleter = Callable[..., DeletionReport]


def make_curation_router(settings: Settings, projects: ProjectStore) -> APIRouter:
    """The DELETE routes; mount behind the platform's login.

    Parameters
    ----------
    settings
        Where the PACS, index, object store and spool are.
    projects
        Which projects exist.
    """
    router = APIRouter()
    platform = Platform(settings)

    def run(
        deleter: Deleter, project: str, target: str, user: Principal, request: Request
    ) -> dict[str, Any]:
        require(user, Action.DELETE_DATA, project, projects.exists)
        try:
            report = deleter(
                platform, project, target, actor=user.name, address=client_address(request)
            )
        except NothingToDeleteError as exc:
            raise HTTPException(404, str(exc)) from None
        except SeriesInUseError as exc:
            raise HTTPException(409, str(exc)) from None
        except (PacsError, ObjectStoreError) as exc:
            raise HTTPException(502, f"not (fully) deleted: {exc}") from None
        return report.as_dict()

    @router.delete("/api/series/{uid}", summary="Delete a series from a project")
    async def remove_series(
        uid: str, request: Request, project: str = Query(ADMIN_PROJECT), user: Principal = _user
    ) -> dict[str, Any]:
        return await run_in_threadpool(run, delete_series, project, uid, user, request)

    @router.delete("/api/studies/{uid}", summary="Delete every series of a study from a project")
    async def remove_study(
        uid: str, request: Request, project: str = Query(ADMIN_PROJECT), user: Principal = _user
    ) -> dict[str, Any]:
        return await run_in_threadpool(run, delete_study, project, uid, user, request)

    @router.delete(
        "/api/projects/{project}/datasets/{dataset}", summary="Delete a dataset and its series"
    )
    async def remove_dataset(
        project: str, dataset: str, request: Request, user: Principal = _user
    ) -> dict[str, Any]:
        return await run_in_threadpool(run, delete_dataset, project, dataset, user, request)

    return router
