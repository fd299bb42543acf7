"""What one host of a multi-host site runs: ``dicomflow worker`` and ``dicomflow receiver``.

A role is the host's settings with every component it does not run switched off; the shared
services (PostgreSQL, PACS, S3, index, Airflow's API server and scheduler, the broker) are
reached at the addresses the settings name. The supervisor of that host loads the settings
as changed here (they are what it is given), so ``dicomflow status`` and ``dicomflow down``
there see exactly the role's components.
"""

from __future__ import annotations

from typing import Literal

from dicomflow.config import Settings
from dicomflow.stack.components import StackError

Role = Literal["worker", "receiver"]


def _shared_only(settings: Settings) -> dict[str, object]:
    """Every shared service switched off: this host reaches the site's own."""
    return {
        "postgres": settings.postgres.replace(managed=False),
        "pacs": settings.pacs.replace(managed=False),
        "s3": settings.s3.replace(managed=False),
        "index": settings.index.replace(opensearch_managed=False),
    }


def _check_shared(settings: Settings, role: Role) -> list[str]:
    problems = []
    if not settings.airflow.url:
        problems.append("airflow.url: the shared Airflow API server (http://HOST:8080)")
    if settings.postgres.host in ("127.0.0.1", "localhost", "::1"):
        problems.append("postgres.host: the shared PostgreSQL's address (not loopback)")
    if settings.s3.endpoint.split(":")[0] in ("127.0.0.1", "localhost"):
        problems.append("s3.endpoint: the shared object store (HOST:PORT, not loopback)")
    if role == "worker":
        if not settings.pacs.dicomweb_url:
            problems.append("pacs.dicomweb_url: the shared PACS's DICOMweb root")
        if settings.index.backend == "opensearch" and not settings.index.opensearch_url:
            problems.append("index.opensearch_url: the shared OpenSearch cluster")
    return problems


def role_settings(settings: Settings, role: Role) -> Settings:
    """``settings`` for a host that runs only ``role``.

    Raises
    ------
    StackError
        When a shared service the role needs is not named in the settings, or (worker) the
        executor is not ``celery``; the message lists every key to set.
    """
    problems = _check_shared(settings, role)
    if role == "worker":
        if not settings.airflow.celery:
            problems.insert(0, "airflow.executor: celery (workers on other hosts need it)")
        if not settings.airflow.broker_url:
            problems.append("airflow.broker_url: the shared broker (redis://:PASSWORD@HOST:6379/0)")
    if problems:
        raise StackError(
            f"`dicomflow {role}` runs only the {role} on this host and reaches everything else "
            "over the network; set in the configuration file:\n  " + "\n  ".join(problems)
        )
    airflow = settings.airflow.replace(managed=False, worker=role == "worker")
    receiver = settings.receiver.replace(managed=role == "receiver")
    web = settings.web.replace(managed=False)
    return settings.replace(**_shared_only(settings), airflow=airflow, receiver=receiver, web=web)
