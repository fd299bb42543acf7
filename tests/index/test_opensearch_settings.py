"""Choosing OpenSearch in the configuration: a managed local node, a cluster, mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomflow.config import ConfigError, Settings, load_settings
from dicomflow.index import SeriesIndexError, open_index
from dicomflow.stack.components import OpenSearchNode, all_components


def load(tmp_path: Path, **index: str) -> Settings:
    environ = {"DICOMFLOW_DATA_DIR": str(tmp_path / "var")}
    environ.update({f"DICOMFLOW_INDEX__{k.upper()}": v for k, v in index.items()})
    return load_settings(environ=environ)


def test_the_embedded_index_runs_no_node(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings.index.backend == "postgres"
    assert "opensearch" not in {c.name for c in all_components(settings)}
    # Managed alone does nothing while the backend is the embedded one.
    managed = load(tmp_path, opensearch_managed="true")
    assert "opensearch" not in {c.name for c in all_components(managed)}


def test_a_managed_node_is_a_component_and_the_index_url(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        backend="opensearch",
        opensearch_managed="true",
        opensearch_http_port="19211",
        opensearch_transport_port="19311",
        opensearch_heap="1g",
    )
    components = {c.name: c for c in all_components(settings)}
    node = components["opensearch"]
    assert isinstance(node, OpenSearchNode)
    assert settings.index.opensearch_endpoint == "http://127.0.0.1:19211" == node.address()
    assert [(p.host, p.port, p.key) for p in node.ports()] == [
        ("127.0.0.1", 19211, "index.opensearch_http_port"),
        ("127.0.0.1", 19311, "index.opensearch_transport_port"),
    ]
    command = node.command()
    assert {"-Xms1g", "-Xmx1g", "-Ehttp.port=19211", "-Etransport.port=19311"} <= set(command)
    assert "-Enetwork.host=127.0.0.1" in command
    assert "-Ediscovery.type=single-node" in command
    # Started before the processes that index (the Airflow tasks, the web service).
    names = list(components)
    assert names.index("opensearch") < names.index("airflow-scheduler")
    assert names.index("opensearch") < names.index("web")


def test_an_external_cluster_runs_no_node(tmp_path: Path) -> None:
    settings = load(tmp_path, backend="opensearch", opensearch_url="https://search.example:9200")
    assert "opensearch" not in {c.name for c in all_components(settings)}
    assert settings.index.opensearch_endpoint == "https://search.example:9200"


def test_a_url_and_a_managed_node_at_once_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, opensearch_managed="true", opensearch_url="https://search.example:9200")
    message = str(err.value)
    assert "opensearch_url is set and opensearch_managed is true" in message
    assert "https://search.example:9200" in message


def test_a_heap_that_is_not_a_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"index\.opensearch_heap = 'lots'"):
        load(tmp_path, opensearch_heap="lots")


def test_opensearch_without_a_cluster_says_what_to_set(tmp_path: Path) -> None:
    settings = load(tmp_path, backend="opensearch")
    with pytest.raises(SeriesIndexError) as err:
        open_index(settings)
    assert "index.opensearch_url is empty" in str(err.value)
    assert "index.opensearch_managed: true" in str(err.value)
