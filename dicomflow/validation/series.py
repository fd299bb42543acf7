"""Validate the instances of a series in parallel and check it for gaps."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from dicomflow.dicom.completeness import duplicate_instance_numbers, missing_instance_numbers
from dicomflow.dicom.headers import SeriesGroup
from dicomflow.dicom.instance import Instance
from dicomflow.validation.dciodvfy import Finding, InstanceValidation, Severity
from dicomflow.validation.runner import Validator

__all__ = [
    "SeriesValidation",
    "representative_instances",
    "sample_evenly",
    "validate_series",
]

_T = TypeVar("_T")


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
    instance_numbers
        Instance Number (or ``None``) by SOP Instance UID of every instance judged for
        completeness, validated or not.
    """

    series_instance_uid: str
    instances: list[InstanceValidation] = field(default_factory=list)
    total_instances: int = 0
    missing_instance_numbers: list[int] = field(default_factory=list)
    duplicate_instance_numbers: list[int] = field(default_factory=list)
    instances_without_number: int = 0
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    instance_numbers: dict[str, int | None] = field(default_factory=dict)

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

    def merged_with(self, newer: SeriesValidation) -> SeriesValidation:
        """This validation and a later one of the same series (e.g. of its next batch).

        Instances are told apart by SOP Instance UID, the later result of an instance wins,
        and completeness is judged again over every instance number known to either.
        """
        if newer.series_instance_uid != self.series_instance_uid:
            raise ValueError(
                f"cannot merge the validation of {newer.series_instance_uid} "
                f"into that of {self.series_instance_uid}"
            )
        by_uid = {_instance_key(i): i for i in self.instances}
        by_uid.update({_instance_key(i): i for i in newer.instances})
        numbers = {**self.instance_numbers, **newer.instance_numbers}
        order = {uid: (n is None, n or 0, uid) for uid, n in numbers.items()}
        instances = sorted(
            by_uid.values(), key=lambda i: order.get(_instance_key(i), (True, 0, _instance_key(i)))
        )
        return SeriesValidation(
            series_instance_uid=self.series_instance_uid,
            instances=instances,
            total_instances=max(len(numbers), len(instances)),
            checked_at=newer.checked_at,
            instance_numbers=numbers,
            **_completeness(list(numbers.values())),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form (see :meth:`from_json`), kept next to the report."""
        return {
            "series_instance_uid": self.series_instance_uid,
            "checked_at": self.checked_at.isoformat(),
            "instance_numbers": self.instance_numbers,
            "instances": [
                {
                    "file": i.path.name,
                    "sop_instance_uid": i.sop_instance_uid,
                    "iod": i.iod,
                    "findings": [[f.severity.value, f.message] for f in i.findings],
                    "returncode": i.returncode,
                    "crashed": i.crashed,
                    "seconds": i.seconds,
                }
                for i in self.instances
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SeriesValidation:
        """Inverse of :meth:`to_json` (file paths keep only their names)."""
        instances = [
            InstanceValidation(
                path=Path(i["file"]),
                sop_instance_uid=i.get("sop_instance_uid"),
                iod=i.get("iod"),
                findings=[Finding(Severity(sev), msg) for sev, msg in i.get("findings", [])],
                returncode=i.get("returncode"),
                crashed=bool(i.get("crashed")),
                seconds=float(i.get("seconds") or 0.0),
            )
            for i in data.get("instances", [])
        ]
        uid = str(data["series_instance_uid"])
        checked_at = datetime.fromisoformat(data["checked_at"])
        stored = cls(
            uid,
            instances=instances,
            checked_at=checked_at,
            instance_numbers=dict(data.get("instance_numbers") or {}),
        )
        # Merging into an empty validation derives the counts from what was stored.
        return cls(uid, checked_at=checked_at).merged_with(stored)

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


def _ordered(instances: Sequence[Instance]) -> list[Instance]:
    return sorted(instances, key=Instance.sort_key)


def representative_instances(series: SeriesGroup) -> list[Instance]:
    """The instances checked at once: the first, middle and last, and one of each SOP class.

    The rest of the series is checked later, in the background lane (TCIA's Posda offers the
    same choice between a few per series, every one, and one per SOP class).
    """
    ordered = _ordered(series.instances)
    if not ordered:
        return []
    picks = {0, (len(ordered) - 1) // 2, len(ordered) - 1}
    seen_classes: set[str] = set()
    for position, instance in enumerate(ordered):
        if instance.sop_class_uid not in seen_classes:
            seen_classes.add(instance.sop_class_uid)
            picks.add(position)
    return [ordered[p] for p in sorted(picks)]


def validate_series(
    series: SeriesGroup,
    validator: Validator | None = None,
    *,
    sample: int | None = None,
    only: Sequence[Instance] | None = None,
) -> SeriesValidation:
    """Run ``dciodvfy`` on the instances of a series and check completeness.

    Parameters
    ----------
    series
        The series as grouped from a batch.
    validator
        Runs ``dciodvfy`` (workers, timeout, fork servers); a plain :class:`Validator`
        when not given.
    sample
        Validate at most this many instances, evenly spaced in Instance Number order
        (``None``: all). Completeness is always judged on all instances.
    only
        Validate these instances of the series (e.g. :func:`representative_instances`, or
        those a first pass left), instead of a sample.

    Returns
    -------
    SeriesValidation
        Counts, per-instance findings and Instance Number gaps.

    Raises
    ------
    ValidatorUnavailableError
        When ``dciodvfy`` is not installed (a deployment problem, not a data problem).
    """
    if validator is None:
        with Validator() as plain:
            return validate_series(series, plain, sample=sample, only=only)
    ordered = _ordered(series.instances)
    chosen = _ordered(only) if only is not None else sample_evenly(ordered, sample)
    numbers = [i.instance_number for i in ordered]
    results = validator.validate_all([(i.path, i.sop_instance_uid) for i in chosen])
    return SeriesValidation(
        series_instance_uid=series.series_instance_uid,
        instances=results,
        total_instances=len(ordered),
        instance_numbers={i.sop_instance_uid: i.instance_number for i in ordered},
        **_completeness(numbers),
    )


def _completeness(numbers: Sequence[int | None]) -> dict[str, Any]:
    """The completeness fields of a :class:`SeriesValidation` over these Instance Numbers."""
    return {
        "missing_instance_numbers": missing_instance_numbers(numbers),
        "duplicate_instance_numbers": duplicate_instance_numbers(numbers),
        "instances_without_number": sum(1 for n in numbers if n is None),
    }


def _instance_key(instance: InstanceValidation) -> str:
    return instance.sop_instance_uid or instance.path.name
