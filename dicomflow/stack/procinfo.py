"""What the kernel says about a process that a wall-clock step cannot change.

A process is known by its pid together with its start time in clock ticks since boot (field 22
of ``/proc/PID/stat``) and the boot id: a reused pid has another start time, and a pid of an
earlier boot has another boot id. psutil's ``create_time()`` instead adds the start ticks to a
boot time derived from the wall clock, so it moves when NTP steps the clock and stops matching
what was recorded before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Identity:
    """A process as the kernel knows it across clock steps."""

    boot_id: str
    start_ticks: int


def boot_id() -> str:
    """The id of the running boot (a new one at every boot)."""
    return (_PROC / "sys/kernel/random/boot_id").read_text().strip()


def start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or ``None`` if there is no such process."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself;
    # the fields after the last ")" start at field 3 (state), so starttime (22) is the 20th.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


def identity(pid: int) -> Identity | None:
    """The identity of a live (or zombie) process, or ``None`` if there is none."""
    ticks = start_ticks(pid)
    return None if ticks is None else Identity(boot_id(), ticks)


def seconds_since_boot() -> float:
    """Seconds since boot on the clock the start ticks count (steps of the wall clock aside)."""
    return float((_PROC / "uptime").read_text().split()[0])


def running_seconds(ident: Identity) -> float | None:
    """How long the process has run, or ``None`` when it belongs to another boot."""
    if ident.boot_id != boot_id():
        return None
    return max(0.0, seconds_since_boot() - ident.start_ticks / CLOCK_TICKS)
