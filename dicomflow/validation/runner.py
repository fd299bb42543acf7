"""Run ``dciodvfy`` on many files at once, through fork servers where they can be built."""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from dicomflow.validation.dciodvfy import (
    DEFAULT_TIMEOUT,
    InstanceValidation,
    find_allocator,
    find_dciodvfy,
    interpret_run,
    run_dciodvfy,
)
from dicomflow.validation.forkserver import (
    ForkServer,
    ForkServerError,
    PreloadUnavailableError,
    build_preload,
)

if TYPE_CHECKING:
    from dicomflow.config import Settings

__all__ = ["DEFAULT_WORKERS", "Validator"]

log = logging.getLogger(__name__)

#: dciodvfy is single-threaded; a few workers keep both cores busy while one waits.
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)

_SIGALRM = 14


class Validator:
    """Validates files with ``dciodvfy`` from a pool of threads.

    With a fork-server library (``preload``), each thread keeps one ``dciodvfy`` started
    and forks it per file, which saves the program's start-up on every file; results are
    the same as plain runs. A server that fails is replaced by plain runs for that file.

    Parameters
    ----------
    executable
        Name or path of ``dciodvfy``.
    workers
        Files validated at the same time.
    timeout
        Seconds per file before its run is stopped and reported as crashed.
    niceness
        ``nice`` level of the validator processes, so that on a busy machine they yield
        the CPU to the steps that make a series searchable.
    preload
        The fork-server library (:func:`~dicomflow.validation.forkserver.build_preload`);
        ``None`` runs one process per file.
    allocator
        A ``malloc`` library preloaded into every run
        (:func:`~dicomflow.validation.dciodvfy.find_allocator`); ``None``: glibc's.

    Raises
    ------
    ValidatorUnavailableError
        When ``dciodvfy`` is not installed.
    """

    def __init__(
        self,
        *,
        executable: str = "dciodvfy",
        workers: int = DEFAULT_WORKERS,
        timeout: float = DEFAULT_TIMEOUT,
        niceness: int = 0,
        preload: Path | None = None,
        allocator: str | None = None,
    ) -> None:
        self.executable = find_dciodvfy(executable)
        self.workers = max(1, workers)
        self.timeout = timeout
        self.niceness = niceness
        self.preload = preload
        self.allocator = allocator
        self._idle: queue.SimpleQueue[ForkServer] = queue.SimpleQueue()
        self._servers: list[ForkServer] = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Validator:
        """A validator configured by ``validation.*``; the fork-server library is built
        into the data directory on first use when ``validation.fork_server`` is on."""
        preload = None
        if settings.validation.fork_server:
            try:
                preload = build_preload(settings.data_dir / "cache")
            except PreloadUnavailableError as exc:
                log.warning("%s; running one dciodvfy process per instance", exc)
        return cls(
            workers=settings.validation.workers,
            niceness=settings.validation.niceness,
            preload=preload,
            allocator=find_allocator(settings.validation.allocator),
        )

    def validate(
        self, path: str | os.PathLike[str], sop_instance_uid: str | None = None
    ) -> InstanceValidation:
        """Validate one file; never raises for anything the file makes ``dciodvfy`` do."""
        if self.preload is None:
            return self._plain(path, sop_instance_uid)
        try:
            server = self._idle.get_nowait()
        except queue.Empty:
            try:
                server = self._start_server(self.preload)
            except OSError as exc:
                log.warning("cannot start a dciodvfy fork server (%s); plain runs", exc)
                return self._plain(path, sop_instance_uid)
        try:
            run = server.run(path, self.timeout)
        except ForkServerError as exc:
            if server.alive:  # it refused the request, e.g. a path it cannot carry
                self._idle.put(server)
            log.warning("%s; validating %s with a plain run", exc, path)
            return self._plain(path, sop_instance_uid)
        self._idle.put(server)
        if run.returncode == -_SIGALRM:
            return interpret_run(
                path,
                sop_instance_uid,
                returncode=None,
                output=run.output,
                seconds=run.seconds,
                timed_out=self.timeout,
            )
        return interpret_run(
            path,
            sop_instance_uid,
            returncode=run.returncode,
            output=run.output,
            seconds=run.seconds,
        )

    def validate_all(
        self, files: Sequence[tuple[str | os.PathLike[str], str | None]]
    ) -> list[InstanceValidation]:
        """Validate ``(path, SOP Instance UID)`` pairs in parallel; results in their order."""
        if self.workers == 1 or len(files) <= 1:
            return [self.validate(path, uid) for path, uid in files]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="dciodvfy")
        return list(self._pool.map(lambda job: self.validate(*job), files))

    def _plain(
        self, path: str | os.PathLike[str], sop_instance_uid: str | None
    ) -> InstanceValidation:
        return run_dciodvfy(
            path,
            sop_instance_uid=sop_instance_uid,
            executable=self.executable,
            timeout=self.timeout,
            niceness=self.niceness,
            allocator=self.allocator,
        )

    def _start_server(self, preload: Path) -> ForkServer:
        server = ForkServer(
            self.executable, preload, niceness=self.niceness, allocator=self.allocator
        )
        with self._lock:
            self._servers.append(server)
        return server

    def close(self) -> None:
        """Stop the threads and the fork servers."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        with self._lock:
            servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        self._idle = queue.SimpleQueue()

    def __enter__(self) -> Validator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
