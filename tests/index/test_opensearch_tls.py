"""The OpenSearch client settings of a production cluster: https, basic auth, the cluster's CA.

The cluster is the session's real node behind a TLS proxy that checks basic authentication
(tests/index/tls_proxy.py, standing in for the security plugin, which the local node lacks).
The platform reaches it through the same settings a deployment writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dicomflow.config import Settings
from dicomflow.db.projects import ADMIN_PROJECT
from dicomflow.index import SeriesIndexError, SeriesQuery, open_index
from dicomflow.stack.isolated import free_port
from tests.index.samples import series, store, uid
from tests.index.tls_proxy import TlsProxy, tls_proxy

USER = "dicomflow"
PASSWORD = "s3cret-Passw0rd"


@pytest.fixture(scope="module")
def proxy(opensearch: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsProxy]:
    """The local node behind HTTPS with basic authentication."""
    folder = tmp_path_factory.mktemp("tls")
    with tls_proxy(opensearch.index.opensearch_endpoint, folder, USER, PASSWORD) as running:
        yield running


def cluster_settings(base: Settings, **index: Any) -> Settings:
    """The session's settings pointed at an external cluster (no managed node)."""
    values = {"backend": "opensearch", "opensearch_managed": False, **index}
    return base.replace(index=base.index.replace(**values))


def test_https_with_basic_auth_and_the_clusters_ca(opensearch: Settings, proxy: TlsProxy) -> None:
    settings = cluster_settings(
        opensearch,
        opensearch_url=proxy.url,
        opensearch_username=USER,
        opensearch_password=PASSWORD,
        opensearch_verify_certs=True,
        opensearch_ca_file=str(proxy.ca_file),
    )
    project = f"tls-{uuid.uuid4().hex[:8]}"
    passed = proxy.authorised
    index = open_index(settings)
    try:
        store(index, project, [series(1, **{"00080060 Modality_keyword": "MR"})])
        found = index.search(project, SeriesQuery(modality=("MR",)))
        assert [d["0020000E SeriesInstanceUID_keyword"] for d in found.items] == [uid(1)]
        assert index.get(project, uid(1)) is not None
        assert index.delete_series(ADMIN_PROJECT, uid(1))
    finally:
        index.close()
    # Every request went through the TLS front door with the user's credentials.
    assert proxy.authorised > passed
    assert proxy.refused == 0


def test_wrong_password_names_the_settings(opensearch: Settings, proxy: TlsProxy) -> None:
    settings = cluster_settings(
        opensearch,
        opensearch_url=proxy.url,
        opensearch_username=USER,
        opensearch_password="wrong",
        opensearch_ca_file=str(proxy.ca_file),
    )
    index = open_index(settings)
    try:
        with pytest.raises(SeriesIndexError) as err:
            index.search("alpha", SeriesQuery())
        with pytest.raises(SeriesIndexError, match="refused the credentials"):
            index.put("alpha", [series(2)])
    finally:
        index.close()
    message = str(err.value)
    assert f"OpenSearch at {proxy.url}" in message
    assert "refused the credentials while searching project_alpha (HTTP 401)" in message
    assert "index.opensearch_username and index.opensearch_password" in message
    assert "wrong" not in message


def test_a_certificate_of_an_unknown_ca_names_the_ca_setting(
    opensearch: Settings, proxy: TlsProxy
) -> None:
    settings = cluster_settings(
        opensearch,
        opensearch_url=proxy.url,
        opensearch_username=USER,
        opensearch_password=PASSWORD,
        opensearch_verify_certs=True,
    )
    index = open_index(settings)
    try:
        with pytest.raises(SeriesIndexError) as err:
            index.get("alpha", uid(1))
    finally:
        index.close()
    message = str(err.value)
    assert f"TLS with OpenSearch at {proxy.url} failed while reading from project_alpha" in message
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "set index.opensearch_ca_file" in message


def test_verification_off_accepts_the_certificate(opensearch: Settings, proxy: TlsProxy) -> None:
    settings = cluster_settings(
        opensearch,
        opensearch_url=proxy.url,
        opensearch_username=USER,
        opensearch_password=PASSWORD,
        opensearch_verify_certs=False,
    )
    index = open_index(settings)
    try:
        assert index.get("no-such-project", uid(1)) is None
        assert index.search("no-such-project", SeriesQuery()).total == 0
    finally:
        index.close()


def test_a_missing_ca_file_is_named(settings: Settings, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    settings = cluster_settings(
        settings, opensearch_url="https://localhost:9", opensearch_ca_file=str(missing)
    )
    with pytest.raises(SeriesIndexError) as err:
        open_index(settings)
    assert f"index.opensearch_ca_file: {missing} is not a file" in str(err.value)


def test_an_unreachable_cluster_is_named(settings: Settings) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    index = open_index(cluster_settings(settings, opensearch_url=url))
    try:
        with pytest.raises(SeriesIndexError, match=f"cannot reach OpenSearch at {url} while"):
            index.put("alpha", [series(3)])
    finally:
        index.close()
