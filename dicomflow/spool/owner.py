"""Which process owns an open batch, recognised in a way a wall-clock step does not move.

An open batch belongs to the process writing it (the receiver, the web service for STOW-RS, an
import). When that process dies, whatever runs recovery (a restarted receiver, the dispatcher)
closes the batch; while it lives, nobody else may touch it. A pid alone is reused, and a start
time from the wall clock moves with the clock: the start time in clock ticks since boot
(``/proc/PID/stat``, field 22) and the boot id name one process for the life of the machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["ProcessIdentity"]

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@cache
def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:  # not Linux: pids and start ticks still tell processes apart
        return ""


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has finished its work
        return None
    return int(fields[19])


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """One process on one boot of one machine.

    Attributes
    ----------
    boot_id
        The kernel's boot id (empty where there is none).
    pid
        The process id.
    start_ticks
        When the process started, in clock ticks since boot.
    """

    boot_id: str
    pid: int
    start_ticks: int

    @classmethod
    def current(cls) -> ProcessIdentity:
        """This process."""
        pid = os.getpid()
        return cls(_boot_id(), pid, _start_ticks(pid) or 0)

    def alive(self) -> bool:
        """Whether this process still runs (on this boot, not a reused pid)."""
        if self.boot_id != _boot_id():
            return False
        return _start_ticks(self.pid) == self.start_ticks

    @property
    def key(self) -> str:
        """A file-name-safe name of the process, e.g. for its own scratch folder."""
        return f"{self.boot_id[:8] or 'noboot'}-{self.pid}-{self.start_ticks}"

    @classmethod
    def from_key(cls, key: str) -> ProcessIdentity | None:
        """Inverse of :attr:`key` (the boot id compared by its first 8 characters)."""
        boot, _, rest = key.partition("-")
        pid, _, ticks = rest.partition("-")
        if not (pid.isdigit() and ticks.isdigit()):
            return None
        full = _boot_id() if _boot_id()[:8] == boot else boot
        return cls(full, int(pid), int(ticks))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able mapping (kept in ``batch.json``)."""
        return {"boot_id": self.boot_id, "pid": self.pid, "start_ticks": self.start_ticks}

    @classmethod
    def from_dict(cls, data: Any) -> ProcessIdentity | None:
        """Inverse of :meth:`as_dict`; ``None`` for a batch written before owners were kept."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(str(data["boot_id"]), int(data["pid"]), int(data["start_ticks"]))
        except (KeyError, TypeError, ValueError):
            return None
