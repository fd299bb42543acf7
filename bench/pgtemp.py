"""A throwaway PostgreSQL server in a temporary directory, for benchmarks and tests.

Runs Debian's PostgreSQL 15 binaries as the ``postgres`` user when started as root (the server
refuses to run as root), listening on 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

BIN_DIR = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(args: list[str]) -> None:
    cmd = ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stdout}{result.stderr}")


@contextlib.contextmanager
def throwaway_postgres(bin_dir: Path = BIN_DIR, *, fsync: bool = True) -> Iterator[str]:
    """Start a server, yield its SQLAlchemy URL (database ``postgres``), stop and delete it.

    ``fsync=False`` makes tests faster; benchmarks keep it on to measure what production does.
    """
    root = Path(tempfile.mkdtemp(prefix="dicomflow-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
        user = "postgres"
    else:
        user = pwd.getpwuid(os.geteuid()).pw_name
    data = root / "data"
    port = _free_port()
    try:
        _run([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", user, "-E", "UTF8"])
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root}"
        if not fsync:
            options += " -c fsync=off -c synchronous_commit=off"
        _run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-o",
                options,
                "-w",
                "start",
            ]
        )
        try:
            yield f"postgresql+psycopg2://{user}@127.0.0.1:{port}/postgres"
        finally:
            _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
