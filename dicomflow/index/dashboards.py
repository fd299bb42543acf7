"""OpenSearch Dashboards saved objects: the shipped file, its checks, and its import.

``config/opensearch/dashboards.ndjson`` holds two index patterns (``project_admin``: every series
once, which the visualizations count; ``project_*``: every project index, for Discover),
visualizations of series per modality, project and dataset over time and of validation
findings, and one dashboard. :func:`import_dashboards` loads it through the saved-objects import
API, overwriting earlier versions of the same ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from dicomflow.config import REPO_ROOT

DASHBOARDS_FILE = REPO_ROOT / "config" / "opensearch" / "dashboards.ndjson"


class DashboardsError(RuntimeError):
    """The saved objects are malformed, or the Dashboards server refused or was unreachable."""


def read_saved_objects(path: Path = DASHBOARDS_FILE) -> list[dict[str, Any]]:
    """Parse an ndjson file of saved objects and check it is self-contained.

    Every object needs ``type``, ``id`` and ``attributes``; ids are unique; every reference
    points to an object of the file with that type; JSON strings inside attributes
    (``visState``, ``panelsJSON``, ``searchSourceJSON``, ...) parse.

    Raises
    ------
    DashboardsError
        Naming the line and the problem.
    """
    objects: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DashboardsError(f"{path}:{number}: not JSON: {exc}") from None
        for key in ("type", "id", "attributes"):
            if key not in obj:
                raise DashboardsError(f"{path}:{number}: saved object without {key!r}")
        _check_embedded_json(path, number, obj["attributes"])
        objects.append(obj)
    defined: dict[str, str] = {}
    for obj in objects:
        if obj["id"] in defined:
            raise DashboardsError(f"{path}: id {obj['id']!r} defined twice")
        defined[obj["id"]] = obj["type"]
    for obj in objects:
        names = set()
        for ref in obj.get("references", []):
            if defined.get(ref.get("id")) != ref.get("type"):
                raise DashboardsError(
                    f"{path}: {obj['id']} references {ref.get('type')} {ref.get('id')!r}, "
                    "which the file does not define"
                )
            names.add(ref.get("name"))
        for wanted in _reference_names(obj["attributes"]):
            if wanted not in names:
                raise DashboardsError(f"{path}: {obj['id']} uses reference {wanted!r} it lacks")
    return objects


def _check_embedded_json(path: Path, number: int, attributes: dict[str, Any]) -> None:
    embedded = [(k, v) for k, v in attributes.items() if k.endswith("JSON") or k == "visState"]
    meta = attributes.get("kibanaSavedObjectMeta", {})
    embedded += [(k, v) for k, v in meta.items() if k.endswith("JSON")]
    for key, value in embedded:
        try:
            json.loads(value)
        except (TypeError, json.JSONDecodeError) as exc:
            raise DashboardsError(f"{path}:{number}: {key} is not a JSON string: {exc}") from None


def _reference_names(attributes: dict[str, Any]) -> list[str]:
    """Reference names the attributes point at (panels, search source index)."""
    names: list[str] = []
    if "panelsJSON" in attributes:
        names += [
            p["panelRefName"] for p in json.loads(attributes["panelsJSON"]) if "panelRefName" in p
        ]
    source = attributes.get("kibanaSavedObjectMeta", {}).get("searchSourceJSON")
    if source:
        ref = json.loads(source).get("indexRefName")
        if ref:
            names.append(ref)
    return names


def import_dashboards(
    url: str,
    username: str = "",
    password: str = "",
    path: Path = DASHBOARDS_FILE,
    *,
    verify: bool = True,
    timeout: float = 30.0,
) -> int:
    """Import the saved objects into OpenSearch Dashboards, overwriting same-id objects.

    Parameters
    ----------
    url
        Root URL of OpenSearch Dashboards, e.g. ``https://dashboards.example.org``.
    username, password
        Basic authentication (security plugin); none when ``username`` is empty.
    path
        The ndjson file; checked with :func:`read_saved_objects` before sending.

    Returns
    -------
    int
        Number of objects imported.

    Raises
    ------
    DashboardsError
        When the file is malformed, the server is unreachable or reports failures.
    """
    read_saved_objects(path)
    auth = (username, password) if username else None
    endpoint = url.rstrip("/") + "/api/saved_objects/_import"
    try:
        response = httpx.post(
            endpoint,
            params={"overwrite": "true"},
            headers={"osd-xsrf": "true"},
            files={"file": (path.name, path.read_bytes(), "application/ndjson")},
            auth=auth,
            verify=verify,
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise DashboardsError(f"cannot reach OpenSearch Dashboards at {endpoint}: {exc}") from exc
    if response.status_code != 200:
        raise DashboardsError(f"{endpoint} answered {response.status_code}: {response.text[:500]}")
    body = response.json()
    if not body.get("success", False):
        raise DashboardsError(f"import reported errors: {body.get('errors')}")
    return int(body.get("successCount", 0))
