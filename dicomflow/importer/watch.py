"""Watched folders: files dropped into configured folders are imported unattended.

The stack's ``watcher`` component (``python -m dicomflow.importer.watch``) looks at each
folder of ``watch.folders`` every ``watch.interval_seconds``. A file is taken only once its
size and modification time stayed the same from one look to the next, so a copy still in
progress is left alone. A taken file goes through the importer (intake, batches, the
dispatcher) like ``dicomflow import``; then it is moved into the done area or deleted
(``on_done``). A file that is not DICOM, or that intake refuses, goes to the spool's problem
area with the reason (``dicomflow problems``). Every pass that finds files writes a record
(``<data_dir>/watch/passes.jsonl``: found, waiting, imported, problems, batches, duration),
which the Activity page and ``dicomflow activity`` show.

Why a component of its own rather than a task of the dispatcher: the dispatcher sits below
the importer (it must not load DICOM import code, and it runs beside the spool); the watcher
runs beside the watched disks, can be stopped alone, and the supervisor restarts it like any
other component. What it has not finished when it dies is simply taken at its next start:
files leave the folder only after their instances are durable in the spool.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dicomflow.config import Settings, WatchedFolder
from dicomflow.importer.importer import Importer, ImportRefusedError, project_directory
from dicomflow.intake.admission import ProjectNames
from dicomflow.spool.records import Door, Origin
from dicomflow.spool.store import Spool, new_id, utc_now

__all__ = ["PASSES_FILE", "FolderWatch", "PassRecord", "read_passes"]

LOGGER = logging.getLogger(__name__)

#: The pass records, one JSON line each, under ``<data_dir>/watch/``.
PASSES_FILE = "passes.jsonl"
#: Marks a running watcher (its health check).
READY_FILE = "watcher.ready"
_DICM_OFFSET = 128


@dataclass
class PassRecord:
    """One look at one watched folder that found files.

    Attributes
    ----------
    id, folder, project, dataset
        The pass and where its files go.
    started_at, finished_at, seconds
        When it ran and how long it took.
    found
        Candidate files in the folder (with the folder's extension).
    waiting
        Files still changing (or first seen): left for a later pass.
    imported, imported_bytes
        Instances made durable in the spool.
    problems
        Files sent to the problem area, with the reason each.
    batches, series
        Where the imported instances went.
    error
        Why the pass could take nothing (e.g. an unknown project), if so.
    """

    id: str
    folder: str
    project: str
    dataset: str
    started_at: str
    finished_at: str = ""
    seconds: float = 0.0
    found: int = 0
    waiting: int = 0
    imported: int = 0
    imported_bytes: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    error: str = ""


class FolderWatch:
    """Takes the files of one watched folder that stopped changing.

    Parameters
    ----------
    settings
        Spool, done area, pass records.
    folder
        The folder's entry of ``watch.folders``.
    projects
        The project directory (default: the platform database).
    """

    def __init__(
        self, settings: Settings, folder: WatchedFolder, projects: ProjectNames | None = None
    ) -> None:
        self.settings = settings
        self.folder = folder
        self.projects = project_directory(settings, projects)
        self.spool = Spool.from_settings(settings)
        self.extension = folder.extension.lower()
        #: What each file looked like at the last look: (size, mtime in ns).
        self._seen: dict[Path, tuple[int, int]] = {}

    def _candidates(self) -> dict[Path, tuple[int, int]]:
        found: dict[Path, tuple[int, int]] = {}
        root = self.folder.path
        if not root.is_dir():
            return found
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                # Hidden files are what copy tools write before renaming into place.
                if name.startswith(".") or not name.lower().endswith(self.extension):
                    continue
                path = Path(dirpath) / name
                try:
                    st = path.stat()
                except OSError:
                    continue
                found[path] = (st.st_size, st.st_mtime_ns)
        return found

    def poll(self) -> PassRecord | None:
        """Look once; take what stopped changing. Returns the pass's record (``None``: the
        folder holds no candidate file), already written to the pass log."""
        started = time.monotonic()
        now = self._candidates()
        stable = sorted(p for p, look in now.items() if self._seen.get(p) == look)
        self._seen = {p: look for p, look in now.items() if p not in set(stable)}
        if not now:
            return None
        record = PassRecord(
            new_id(),
            str(self.folder.path),
            self.folder.project,
            self.folder.dataset,
            utc_now(),
            found=len(now),
            waiting=len(now) - len(stable),
        )
        if stable:
            self._take(stable, record)
        record.finished_at = utc_now()
        record.seconds = round(time.monotonic() - started, 3)
        self._write(record)
        return record

    def _take(self, paths: list[Path], record: PassRecord) -> None:
        folder = self.folder
        try:
            importer = Importer(
                self.settings,
                folder.project,
                folder.dataset,
                self.projects,
                door=Door.WATCH,
                peer=f"watch:{folder.path}",
                extension=self.extension or None,
            )
        except ImportRefusedError as exc:
            record.error = f"nothing taken: {exc}"
            LOGGER.error("watched folder %s: %s", folder.path, record.error)
            return
        imported: list[Path] = []
        try:
            for path in paths:
                name = str(path.relative_to(folder.path))
                why = _not_dicom(path)
                if why is not None:
                    self._to_problems(path, name, why, record)
                    continue
                before = importer.report.imported
                importer.add(path, name)
                if importer.report.imported > before:
                    imported.append(path)
                elif importer.report.ignored and importer.report.ignored[-1].name == name:
                    ignored = importer.report.ignored[-1]
                    # Intake kept a copy in the problem area: the file itself may go.
                    record.problems.append({"file": name, "reason": ignored.detail})
                    path.unlink(missing_ok=True)
        finally:
            report = importer.finish()
        record.imported = report.imported
        record.imported_bytes = report.imported_bytes
        record.batches = list(report.batches)
        record.series = [s.series_instance_uid for s in report.series]
        # Only now: the instances are durable in closed batches.
        for path in imported:
            self._done(path)

    def _to_problems(self, path: Path, name: str, why: str, record: PassRecord) -> None:
        folder = self.folder
        origin = Origin(Door.WATCH, f"watch:{folder.path}", folder.dataset, folder.project)
        try:
            self.spool.keep_problem(
                path,
                why,
                origin,
                folder.project,
                move=True,
                details={
                    "watched_folder": str(folder.path),
                    "file": name,
                    "dataset": folder.dataset,
                },
            )
        except OSError as exc:
            LOGGER.error(
                "watched folder %s: cannot keep %s as a problem: %s", folder.path, name, exc
            )
            return
        record.problems.append({"file": name, "reason": why})

    def _done(self, path: Path) -> None:
        folder = self.folder
        if folder.on_done == "delete":
            path.unlink(missing_ok=True)
            return
        relative = path.relative_to(folder.path)
        target = self.settings.watch_done_dir / folder.project / folder.dataset / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # the same name imported before: keep both
            target = target.with_name(f"{target.stem}-{new_id()}{target.suffix}")
        shutil.move(str(path), str(target))

    def _write(self, record: PassRecord) -> None:
        log = self.settings.watch_dir / PASSES_FILE
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(record)) + "\n")
        LOGGER.info(
            "watched folder %s: found %d, waiting %d, imported %d, problems %d, batches %s%s",
            record.folder,
            record.found,
            record.waiting,
            record.imported,
            len(record.problems),
            ", ".join(record.batches) or "-",
            f" ({record.error})" if record.error else "",
        )


def _not_dicom(path: Path) -> str | None:
    """Why a file cannot be an instance (unreadable, no DICM prefix), or ``None``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_DICM_OFFSET + 4)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if head[_DICM_OFFSET:] != b"DICM":
        return "not a DICOM Part 10 file (no DICM prefix at byte 128)"
    return None


def read_passes(settings: Settings, limit: int = 1000) -> list[PassRecord]:
    """The latest pass records, newest first."""
    log = settings.watch_dir / PASSES_FILE
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in reversed(lines[-limit:]):
        try:
            records.append(PassRecord(**json.loads(line)))
        except (ValueError, TypeError):
            continue  # a line a crash cut short
    return records


def run(settings: Settings, stop: threading.Event) -> None:
    """Poll every watched folder until ``stop`` is set."""
    watches = [FolderWatch(settings, folder) for folder in settings.watch.folders]
    ready = settings.run_dir / READY_FILE
    ready.parent.mkdir(parents=True, exist_ok=True)
    ready.write_text(str(os.getpid()))
    LOGGER.info("watching %s", ", ".join(str(f.path) for f in settings.watch.folders) or "nothing")
    try:
        while not stop.is_set():
            for watch in watches:
                try:
                    watch.poll()
                except Exception:  # one folder's trouble must not stop the others
                    LOGGER.exception("watched folder %s: pass failed", watch.folder.path)
            stop.wait(settings.watch.interval_seconds)
    finally:
        ready.unlink(missing_ok=True)


def main() -> int:
    """``python -m dicomflow.importer.watch``: poll the watched folders until SIGTERM/SIGINT."""
    import signal
    import sys

    from dicomflow.config import ConfigError, load_settings

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(create_secrets=False)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(settings, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
