"""Validate the instances of a series in parallel and check it for gaps."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from dicomflow.dicom.completeness import duplicate_instance_numbers, missing_instance_numbers
from dicomflow.dicom.headers import InstanceInfo, SeriesGroup
from dicomflow.validation.dciodvfy import (
    DEFAULT_TIMEOUT,
    InstanceValidation,
    find_dciodvfy,
    run_dciodvfy,
)

__all__ = ["DEFAULT_WORKERS", "SeriesValidation", "sample_evenly", "validate_series"]

_T = TypeVar("_T")

#: dciodvfy is single-threaded and short-lived; a few workers hide process start-up
#: without taking every core from the rest of the pipeline.
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)


@dataclass(slots=True)
class SeriesValidation:
    """The validation of (a sample of) one series.

    Attributes
    ----------
    series_instance_uid
        The series.
    instances
        One result per validated instance, in series order.
    total_instances
        How many instances the series has in this batch (validated or not).
    missing_instance_numbers
        Gaps between the lowest and highest Instance Number of all instances.
    duplicate_instance_numbers
        Instance Numbers used more than once.
    instances_without_number
        How many instances lack an Instance Number.
    checked_at
        When the validation finished (UTC).
    """

    series_instance_uid: str
    instances: list[InstanceValidation] = field(default_factory=list)
    total_instances: int = 0
    missing_instance_numbers: list[int] = field(default_factory=list)
    duplicate_instance_numbers: list[int] = field(default_factory=list)
    instances_without_number: int = 0
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def errors(self) -> int:
        """Total error findings over the validated instances."""
        return sum(i.errors for i in self.instances)

    @property
    def warnings(self) -> int:
        """Total warning findings over the validated instances."""
        return sum(i.warnings for i in self.instances)

    @property
    def crashed(self) -> int:
        """How many validator runs crashed or timed out."""
        return sum(1 for i in self.instances if i.crashed)

    @property
    def sampled(self) -> bool:
        """True when only some of the instances were validated."""
        return len(self.instances) < self.total_instances

    def summary(self) -> dict[str, Any]:
        """The JSON-able counts a series document keeps (see ``build_series_document``)."""
        return {
            "errors": self.errors,
            "warnings": self.warnings,
            "instances_checked": len(self.instances),
            "checked_at": self.checked_at.isoformat(),
            "missing_instance_numbers": list(self.missing_instance_numbers),
        }


def sample_evenly(items: Sequence[_T], count: int | None) -> list[_T]:
    """Pick at most ``count`` items spread evenly, always including first and last.

    ``None`` or a count not below ``len(items)`` keeps everything.
    """
    if count is None or count >= len(items):
        return list(items)
    if count <= 0:
        return []
    if count == 1:
        return [items[(len(items) - 1) // 2]]
    step = (len(items) - 1) / (count - 1)
    # Round half up (not to even), so the picks are symmetric about the middle.
    return [items[math.floor(k * step + 0.5)] for k in range(count)]


def _ordered(instances: Sequence[InstanceInfo]) -> list[InstanceInfo]:
    return sorted(
        instances,
        key=lambda i: (i.instance_number is None, i.instance_number or 0, str(i.path)),
    )


def validate_series(
    series: SeriesGroup,
    *,
    sample: int | None = None,
    workers: int = DEFAULT_WORKERS,
    executable: str = "dciodvfy",
    timeout: float = DEFAULT_TIMEOUT,
    niceness: int = 0,
) -> SeriesValidation:
    """Run ``dciodvfy`` on the instances of a series and check completeness.

    Parameters
    ----------
    series
        The series as grouped from a batch.
    sample
        Validate at most this many instances, evenly spaced in Instance Number order
        (``None``: all). Completeness is always judged on all instances.
    workers
        Size of the thread pool; each thread waits on one ``dciodvfy`` process.
    executable
        Name or path of ``dciodvfy``.
    timeout
        Seconds per instance before its run is reported as crashed.
    niceness
        ``nice`` level of the validator processes (see :func:`run_dciodvfy`).

    Returns
    -------
    SeriesValidation
        Counts, per-instance findings and Instance Number gaps.

    Raises
    ------
    ValidatorUnavailableError
        When ``dciodvfy`` is not installed (a deployment problem, not a data problem).
    """
    resolved = find_dciodvfy(executable)
    ordered = _ordered(series.instances)
    chosen = sample_evenly(ordered, sample)
    numbers = [i.instance_number for i in ordered]

    def check(instance: InstanceInfo) -> InstanceValidation:
        return run_dciodvfy(
            instance.path,
            sop_instance_uid=instance.sop_instance_uid,
            executable=resolved,
            timeout=timeout,
            niceness=niceness,
        )

    if workers <= 1 or len(chosen) <= 1:
        results = [check(instance) for instance in chosen]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dciodvfy") as pool:
            results = list(pool.map(check, chosen))
    return SeriesValidation(
        series_instance_uid=series.series_instance_uid,
        instances=results,
        total_instances=len(ordered),
        missing_instance_numbers=missing_instance_numbers(numbers),
        duplicate_instance_numbers=duplicate_instance_numbers(numbers),
        instances_without_number=sum(1 for n in numbers if n is None),
    )
