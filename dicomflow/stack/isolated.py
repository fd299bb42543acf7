"""A throwaway stack on free loopback ports: for tests, benchmarks and trying things out."""

from __future__ import annotations

import os
import random
import socket
import tempfile
from pathlib import Path

from dicomflow.stack.components import port_is_free


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_block(size: int, extra_offsets: tuple[int, ...] = ()) -> int:
    """The first port of ``size`` consecutive free ports (plus free ``base + offset`` ports)."""
    for _ in range(200):
        base = random.randrange(20000, 40000)
        ports = [base + i for i in range(size)] + [base + o for o in extra_offsets]
        if all(port_is_free("127.0.0.1", p) for p in ports):
            return base
    raise RuntimeError("no block of free ports found")


def stack_environment(data_dir: Path) -> dict[str, str]:
    """``DICOMFLOW_*`` variables for a stack of our own in ``data_dir`` on free ports."""
    return {
        "DICOMFLOW_DATA_DIR": str(data_dir),
        "DICOMFLOW_POSTGRES__PORT": str(free_port()),
        "DICOMFLOW_PACS__HTTP_PORT": str(free_port()),
        "DICOMFLOW_S3__ENDPOINT": f"127.0.0.1:{free_port()}",
        "DICOMFLOW_S3__INTERNAL_PORT_BASE": str(free_port_block(11, (10007,))),
        "DICOMFLOW_AIRFLOW__PORT": str(free_port()),
        "DICOMFLOW_RECEIVER__PORT": str(free_port()),
        "DICOMFLOW_WEB__PORT": str(free_port()),
        "DICOMFLOW_INDEX__OPENSEARCH_HTTP_PORT": str(free_port()),
        "DICOMFLOW_INDEX__OPENSEARCH_TRANSPORT_PORT": str(free_port()),
    }


def stack_data_dir() -> Path:
    """A data directory every component's user can reach (PostgreSQL runs as ``postgres``).

    pytest's temporary folders are private to their owner, so they do not do.
    """
    path = Path(tempfile.mkdtemp(prefix="dicomflow-"))
    os.chmod(path, 0o755)
    return path
