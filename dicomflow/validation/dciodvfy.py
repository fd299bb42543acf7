"""Run dicom3tools' ``dciodvfy`` on DICOM files and parse what it says.

``dciodvfy`` writes its findings to stderr, one per line, prefixed ``Error - `` or
``Warning - ``; the IOD name it checked against appears as a bare word. Its exit status
does not tell whether errors were found (0 with errors present), so only the lines are
trusted. It can also abort on data it does not expect (an assertion, SIGABRT, on
pydicom's ``rtdose.dcm``): that is a finding about the file, not a pipeline failure.
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

__all__ = [
    "DEFAULT_TIMEOUT",
    "Finding",
    "InstanceValidation",
    "Severity",
    "ValidatorUnavailableError",
    "find_allocator",
    "find_dciodvfy",
    "interpret_run",
    "parse_dciodvfy_output",
    "run_dciodvfy",
]

log = logging.getLogger(__name__)

#: Seconds one file may take; dciodvfy needs ~4 ms for an ordinary instance.
DEFAULT_TIMEOUT = 60.0

_ERROR_PREFIX = "Error - "
_WARNING_PREFIX = "Warning - "


class Severity(StrEnum):
    """How serious a finding is."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Finding:
    """One message of the validator about one instance.

    Attributes
    ----------
    severity
        Error or warning.
    message
        The validator's text without its ``Error - ``/``Warning - `` prefix.
    """

    severity: Severity
    message: str


@dataclass(slots=True)
class InstanceValidation:
    """The validation of one file.

    Attributes
    ----------
    path
        The file.
    sop_instance_uid
        Its SOP Instance UID when known to the caller.
    iod
        The IOD ``dciodvfy`` checked against (e.g. ``"CTImage"``), when it said.
    findings
        Errors and warnings in the order printed.
    returncode
        The process exit status (negative: killed by that signal).
    crashed
        True when the validator aborted or timed out; ``findings`` then holds an error
        saying so, after whatever was printed before the crash.
    seconds
        Wall-clock time of the run.
    """

    path: Path
    sop_instance_uid: str | None = None
    iod: str | None = None
    findings: list[Finding] = field(default_factory=list)
    returncode: int | None = None
    crashed: bool = False
    seconds: float = 0.0

    @property
    def errors(self) -> int:
        """Number of error findings."""
        return sum(1 for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> int:
        """Number of warning findings."""
        return sum(1 for f in self.findings if f.severity is Severity.WARNING)


class ValidatorUnavailableError(RuntimeError):
    """``dciodvfy`` is not installed: a deployment problem, reported loudly once."""


def find_dciodvfy(executable: str = "dciodvfy") -> str:
    """Resolve the validator executable.

    Raises
    ------
    ValidatorUnavailableError
        When it cannot be found (Debian package ``dicom3tools``).
    """
    resolved = shutil.which(executable)
    if resolved is None:
        raise ValidatorUnavailableError(
            f"{executable!r} not found; install dicom3tools (Debian: apt-get install dicom3tools)"
        )
    return resolved


def parse_dciodvfy_output(text: str) -> tuple[str | None, list[Finding], list[str]]:
    """Split ``dciodvfy`` output into the IOD name, findings and other lines.

    Returns
    -------
    tuple
        ``(iod, findings, other_lines)``; ``other_lines`` holds anything that is neither
        a finding nor the IOD name (e.g. an assertion message before a crash).
    """
    iod: str | None = None
    findings: list[Finding] = []
    other: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith(_ERROR_PREFIX):
            findings.append(Finding(Severity.ERROR, line[len(_ERROR_PREFIX) :].strip()))
        elif line.startswith(_WARNING_PREFIX):
            findings.append(Finding(Severity.WARNING, line[len(_WARNING_PREFIX) :].strip()))
        elif iod is None and line.isidentifier():
            iod = line
        else:
            other.append(line)
    return iod, findings, other


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown"


def find_allocator(setting: str) -> str | None:
    """The ``malloc`` library to preload into ``dciodvfy`` for ``validation.allocator``.

    dciodvfy spends much of a run on small allocations (its attribute lists and strings);
    jemalloc's are cheaper than glibc's, and the findings are the same (tests compare
    them). ``"auto"`` is the system's jemalloc when it is installed (Debian: libjemalloc2),
    ``""`` the C library's own, anything else a library name or path for ``LD_PRELOAD``.

    Returns
    -------
    str or None
        What to put in ``LD_PRELOAD``, or ``None``.
    """
    if setting == "auto":
        return ctypes.util.find_library("jemalloc")
    if not setting:
        return None
    if "/" in setting and not Path(setting).is_file():
        log.warning("validation.allocator %s does not exist; dciodvfy uses glibc's", setting)
        return None
    return setting


def run_dciodvfy(
    path: str | os.PathLike[str],
    *,
    sop_instance_uid: str | None = None,
    executable: str = "dciodvfy",
    timeout: float = DEFAULT_TIMEOUT,
    niceness: int = 0,
    allocator: str | None = None,
) -> InstanceValidation:
    """Validate one file with a fresh ``dciodvfy`` process.

    Parameters
    ----------
    path
        The file.
    sop_instance_uid
        Carried into the result for reporting.
    executable
        Name or path of ``dciodvfy``.
    timeout
        Seconds before the run is killed and reported as a crash.
    niceness
        Run the validator at this ``nice`` level (0: as the caller), so that on a busy
        machine it yields the CPU to the steps that make a series searchable.
    allocator
        A ``malloc`` library preloaded into the validator (see :func:`find_allocator`);
        ``None``: the C library's own.

    Returns
    -------
    InstanceValidation
        Never raises for anything the file makes the validator do.
    """
    started = time.perf_counter()
    try:
        # `nice` execs the validator in its place, so exit status and signals are its own.
        prefix = ["nice", "-n", str(niceness)] if niceness else []
        process = subprocess.run(
            [*prefix, executable, os.fspath(path)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            env={**os.environ, "LD_PRELOAD": allocator} if allocator else None,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        return interpret_run(
            path,
            sop_instance_uid,
            returncode=None,
            output=stderr or "",
            seconds=time.perf_counter() - started,
            timed_out=timeout,
        )
    # Findings go to stderr; stdout is parsed too because some builds print there.
    return interpret_run(
        path,
        sop_instance_uid,
        returncode=process.returncode,
        output=process.stderr + process.stdout,
        seconds=time.perf_counter() - started,
    )


def interpret_run(
    path: str | os.PathLike[str],
    sop_instance_uid: str | None,
    *,
    returncode: int | None,
    output: str,
    seconds: float,
    timed_out: float | None = None,
) -> InstanceValidation:
    """Turn what one ``dciodvfy`` run printed and how it ended into a result.

    Parameters
    ----------
    returncode
        Exit status, or minus the signal that ended it; ``None`` when it was killed
        for taking too long.
    output
        Everything it printed.
    timed_out
        The timeout, when the run was killed for exceeding it.
    """
    result = InstanceValidation(Path(path), sop_instance_uid, seconds=seconds)
    result.returncode = returncode
    result.iod, result.findings, other = parse_dciodvfy_output(output)
    if timed_out is not None:
        result.crashed = True
        result.findings.append(
            Finding(Severity.ERROR, f"validator timed out after {timed_out:g} s")
        )
        return result
    if returncode is None:
        return result
    # A shell reports SIGABRT as 134 (128 + 6); subprocess reports it as -6.
    signal_number = -returncode if returncode < 0 else None
    if signal_number is None and returncode > 128:
        signal_number = returncode - 128
    if signal_number is not None:
        result.crashed = True
        detail = f": {other[-1]}" if other else ""
        result.findings.append(
            Finding(
                Severity.ERROR,
                f"validator crashed (signal {signal_number}, "
                f"{_signal_name(signal_number)}){detail}",
            )
        )
    return result
