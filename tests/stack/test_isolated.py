"""The free ports a throwaway stack is given."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psutil

from dicomflow.stack.components import port_holder, port_is_free
from dicomflow.stack.isolated import free_port, free_port_block


def _ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_free_ports_lie_below_the_source_ports_of_outgoing_connections() -> None:
    # A test stack starts some of its servers minutes after its ports were picked; a port
    # in the ephemeral range could meanwhile be some client connection's source port.
    ports = [free_port() for _ in range(50)]
    assert all(p < _ephemeral_low() for p in ports)
    assert all(port_is_free("127.0.0.1", p) for p in ports)
    assert len(set(ports)) == len(ports), "a port was handed out twice"


def test_a_block_of_free_ports_lies_below_them_too_and_overlaps_no_other_port() -> None:
    before = {free_port() for _ in range(20)}
    base = free_port_block(11, (10007,))
    block = {base + i for i in range(11)} | {base + 10007}
    assert max(block) < _ephemeral_low()
    assert not block & before
    assert not block & {free_port() for _ in range(20)}


def test_a_taken_port_is_traced_to_the_connection_that_took_it() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = server.getsockname()
        with socket.create_connection(address) as client:
            source = client.getsockname()[1]
            assert not port_is_free("127.0.0.1", source)
            holder = port_holder(source)
    assert holder == (
        f"pid {os.getpid()} ({psutil.Process().name()}), a connection to 127.0.0.1:{address[1]}"
    )
