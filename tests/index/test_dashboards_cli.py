"""`dicomflow dashboards import`: what a user sees without a Dashboards server at hand.

No OpenSearch Dashboards can run on the development machines; the import itself runs against a
real one when DICOMFLOW_DASHBOARDS_URL is set.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dicomflow.stack.isolated import free_port


def dicomflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomflow.cli", *args], env=env, capture_output=True, text=True
    )


def test_without_a_url_the_command_says_which_key_to_set(stack_env: dict[str, str]) -> None:
    result = dicomflow(stack_env, "dashboards", "import")
    assert result.returncode == 1
    assert "index.dashboards_url" in result.stderr and "--url" in result.stderr


def test_an_unreachable_dashboards_is_named(stack_env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = dicomflow(stack_env, "dashboards", "import", "--url", url)
    assert result.returncode == 1
    assert f"cannot reach OpenSearch Dashboards at {url}/api/saved_objects/_import" in result.stderr


@pytest.mark.skipif(
    not os.environ.get("DICOMFLOW_DASHBOARDS_URL"),
    reason="needs a real OpenSearch Dashboards: set DICOMFLOW_DASHBOARDS_URL",
)
def test_import_into_a_real_dashboards(stack_env: dict[str, str]) -> None:
    url = os.environ["DICOMFLOW_DASHBOARDS_URL"]
    result = dicomflow(stack_env, "dashboards", "import", "--url", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("imported ")
