"""A throwaway stack on free loopback ports: for tests, benchmarks and trying things out."""

from __future__ import annotations

import os
import random
import socket
import tempfile
from pathlib import Path

from dicomflow.stack.components import port_is_free

#: The lowest port handed out: below it lie the ports services default to (5432, 8042, ...).
_LOWEST = 10000
#: Ports handed out by this process, so that no two of its stacks are given the same one.
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections' source ports."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _claim(ports: list[int]) -> bool:
    if any(p in _handed_out or not port_is_free("127.0.0.1", p) for p in ports):
        return False
    _handed_out.update(ports)
    return True


def _below_ephemeral(span: int) -> range | None:
    """Where a block of ``span`` ports starts so that it ends below the ephemeral range."""
    high = _ephemeral_low() - span
    return range(_LOWEST, high) if high - _LOWEST >= 1000 else None


def free_port() -> int:
    """A loopback port nobody listens on now, and that no outgoing connection will take.

    The port comes from below the kernel's ephemeral range. A port the kernel picks (a bind
    to port 0) lies in that range, so a client's connection can take it as its source port
    in the minutes before the server that was given it starts, and the server then finds
    it taken.
    """
    starts = _below_ephemeral(1)
    if starts is not None:
        for _ in range(200):
            port = random.choice(starts)
            if _claim([port]):
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_block(size: int, extra_offsets: tuple[int, ...] = ()) -> int:
    """The first port of ``size`` consecutive free ports (plus free ``base + offset`` ports).

    Like :func:`free_port`, the ports lie below the kernel's ephemeral range when it leaves
    room for them.
    """
    span = max((size, *(o + 1 for o in extra_offsets)))
    starts = _below_ephemeral(span) or range(20000, 40000)
    for _ in range(200):
        base = random.choice(starts)
        if _claim([base + i for i in range(size)] + [base + o for o in extra_offsets]):
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
