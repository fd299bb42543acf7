"""Start ``dciodvfy`` once and fork it for each file.

A plain run of ``dciodvfy`` on a small instance spends more than half its time starting
up. :class:`ForkServer` keeps one ``dciodvfy`` process stopped just before its ``main``
(by the preload library built from ``forkserver.c`` next to this module) and has it fork
a child per file; each child is the program's own run on that file.

The library is compiled with the system's C compiler on first use and kept in a cache
directory; where no compiler exists, :func:`build_preload` says so and callers run
``dciodvfy`` the plain way.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ForkServer",
    "ForkServerError",
    "PreloadUnavailableError",
    "ServedRun",
    "build_preload",
]

SOURCE = Path(__file__).with_name("forkserver.c")

#: Extra seconds the client waits past a file's own timeout before it gives up on the
#: server (the child is killed by SIGALRM at the timeout; this only guards a stuck server).
_GRACE = 10.0

_build_lock = threading.Lock()


class PreloadUnavailableError(RuntimeError):
    """The fork-server library cannot be built here (no C compiler, or it failed)."""


class ForkServerError(RuntimeError):
    """The server process died or stopped answering; the file was not validated by it."""


def build_preload(cache_dir: Path, compiler: str = "cc") -> Path:
    """Return the compiled fork-server library, building it if needed.

    The file name carries a hash of the source, so a changed source is rebuilt and
    processes using the old one are not disturbed. Concurrent builders each write a
    temporary file and rename it into place.

    Raises
    ------
    PreloadUnavailableError
        When there is no C compiler or compiling fails; the message says which.
    """
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = cache_dir / f"dciodvfy-forkserver-{digest}.so"
    if target.exists():
        return target
    resolved = shutil.which(compiler)
    if resolved is None:
        raise PreloadUnavailableError(
            f"no C compiler {compiler!r} to build the dciodvfy fork server "
            "(Debian: apt-get install gcc libc6-dev)"
        )
    with _build_lock:
        if target.exists():
            return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=cache_dir, prefix=".build-", suffix=".so")
        os.close(fd)
        command = [resolved, "-shared", "-fPIC", "-O2", "-o", partial, str(SOURCE), "-ldl"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise PreloadUnavailableError(
                    f"building the dciodvfy fork server failed: {done.stderr.strip()[-500:]}"
                )
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    return target


@dataclass(frozen=True, slots=True)
class ServedRun:
    """What one forked ``dciodvfy`` did.

    Attributes
    ----------
    returncode
        As :mod:`subprocess` reports it: the exit status, or minus the signal number.
    output
        Its stdout and stderr, interleaved as written.
    seconds
        Wall-clock time from request to answer.
    """

    returncode: int
    output: str
    seconds: float


class ForkServer:
    """One ``dciodvfy`` process that forks a child per file.

    Not thread-safe: one request at a time. Use one server per worker thread.

    Parameters
    ----------
    executable
        Path of ``dciodvfy``.
    preload
        The library from :func:`build_preload`.
    niceness
        ``nice`` level of the server; its children inherit it.
    allocator
        A ``malloc`` library preloaded too (see
        :func:`~dicomflow.validation.dciodvfy.find_allocator`).
    """

    def __init__(
        self, executable: str, preload: Path, *, niceness: int = 0, allocator: str | None = None
    ) -> None:
        environment = {
            **os.environ,
            "LD_PRELOAD": f"{preload}:{allocator}" if allocator else str(preload),
            "DICOMFLOW_FORK_SERVER": "1",
        }
        self._process = subprocess.Popen(
            [executable],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=environment,
            start_new_session=True,  # one group: a stuck server goes with its child
        )
        if self._process.stdin is None or self._process.stdout is None:
            raise ForkServerError("dciodvfy fork server started without pipes")
        self._requests = self._process.stdin
        self._replies = self._process.stdout
        # Only ever lower its priority (raising it needs privileges): a task already runs at
        # airflow.task_niceness.
        if niceness > os.getpriority(os.PRIO_PROCESS, self._process.pid):
            os.setpriority(os.PRIO_PROCESS, self._process.pid, niceness)
        self._pending = b""

    @property
    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self._process.poll() is None

    def run(self, path: str | os.PathLike[str], timeout: float) -> ServedRun:
        """Validate one file in a forked child.

        Raises
        ------
        ForkServerError
            When the server is gone or does not answer in time; it is then stopped, and
            the caller should validate the file another way.
        """
        # Absolute: the server resolves names in the directory it was started in.
        name = os.path.abspath(path)
        if "\n" in name or len(name.encode()) > 8000:
            raise ForkServerError(f"path not expressible to the fork server: {name!r}")
        started = time.perf_counter()
        try:
            self._requests.write(f"{max(1, round(timeout))} {name}\n".encode())
            self._requests.flush()
            deadline = time.monotonic() + timeout + _GRACE
            header = self._read_line(deadline)
            status_text, length_text = header.split()
            body = self._read_exactly(int(length_text), deadline)
        except (OSError, ValueError) as exc:
            self.close()
            raise ForkServerError(f"dciodvfy fork server failed: {exc}") from exc
        return ServedRun(
            os.waitstatus_to_exitcode(int(status_text)),
            body.decode(errors="replace"),
            time.perf_counter() - started,
        )

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        with selectors.DefaultSelector() as selector:
            selector.register(self._replies, selectors.EVENT_READ)
            if remaining <= 0 or not selector.select(remaining):
                raise OSError("no answer in time")
        chunk = os.read(self._replies.fileno(), 65536)
        if not chunk:
            raise OSError(f"server exited (status {self._process.wait()})")
        self._pending += chunk

    def _read_line(self, deadline: float) -> str:
        while b"\n" not in self._pending:
            self._fill(deadline)
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode()

    def _read_exactly(self, length: int, deadline: float) -> bytes:
        while len(self._pending) < length:
            self._fill(deadline)
        body, self._pending = self._pending[:length], self._pending[length:]
        return body

    def close(self) -> None:
        """Stop the server (closing its input ends it; a stuck one is killed)."""
        process = self._process
        if process.poll() is None:
            try:
                self._requests.close()
                process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for stream in (self._requests, self._replies):
            if not stream.closed:
                # A dead server's pipe cannot take the last flush.
                with contextlib.suppress(OSError):
                    stream.close()
