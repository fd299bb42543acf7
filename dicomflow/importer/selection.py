"""The selection of a reviewed import: a file a person edits, and the rule that imports it.

``dicomflow import PATH --review`` writes a selection file; ``--select FILE`` reads it back.
:func:`resolve_selection` adds what the chosen series reference and refuses flagged series
without an override; the override goes to the audit trail.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from dicomflow.access.audit import Audit, AuditAction
from dicomflow.importer.review import Flag, Review

__all__ = [
    "SELECTION_FORMAT",
    "SelectionError",
    "read_selection",
    "record_override",
    "resolve_selection",
    "selection_document",
    "write_selection",
]

#: The ``format`` of a selection file.
SELECTION_FORMAT = "dicomflow-selection/1"


class SelectionError(ValueError):
    """A selection file or a list of series cannot be used (says what, where, and what to do)."""


def selection_document(review: Review, selected: Iterable[str]) -> dict[str, Any]:
    """The selection file's content: every reviewed series, each ``selected`` or not."""
    chosen = set(selected)
    flags: dict[str, list[str]] = {}
    for flag in review.flags:
        flags.setdefault(flag.series_uid, []).append(flag.message)
    return {
        "format": SELECTION_FORMAT,
        "inputs": review.inputs,
        "help": "set 'selected' to true or false per series, then: dicomflow import PATH... "
        "--select THIS_FILE (series a selected one references are added unless "
        "--no-references)",
        "series": [
            {
                "series_uid": s.series_uid,
                "selected": s.series_uid in chosen,
                "modality": s.modality,
                "description": s.description,
                "patient_id": s.patient_id,
                "study_uid": s.study_uid,
                "instances": s.instances,
                "references": s.references,
                "in_project": s.in_project,
                "flags": flags.get(s.series_uid, []),
            }
            for s in review.series()
        ],
    }


def write_selection(path: Path, review: Review, selected: Iterable[str]) -> Path:
    """Write the selection file (JSON) and return its path."""
    path.write_text(json.dumps(selection_document(review, selected), indent=2) + "\n")
    return path


def read_selection(path: Path) -> list[str]:
    """The Series Instance UIDs marked ``selected`` in a selection file.

    Raises
    ------
    SelectionError
        When the file is unreadable, not JSON, or not a selection file.
    """
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SelectionError(f"selection file {path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise SelectionError(f"selection file {path}: not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != SELECTION_FORMAT:
        raise SelectionError(
            f"selection file {path}: not a {SELECTION_FORMAT} file "
            "(write one with dicomflow import PATH --review)"
        )
    chosen: list[str] = []
    for number, item in enumerate(data.get("series") or [], start=1):
        if not isinstance(item, dict) or not isinstance(item.get("series_uid"), str):
            raise SelectionError(f"selection file {path}: series entry {number} has no series_uid")
        if not isinstance(item.get("selected"), bool):
            raise SelectionError(
                f"selection file {path}: series {item['series_uid']}: 'selected' must be "
                "true or false"
            )
        if item["selected"]:
            chosen.append(item["series_uid"])
    return chosen


def resolve_selection(
    review: Review,
    selected: Sequence[str],
    *,
    references: bool = True,
    override: bool = False,
) -> tuple[set[str], list[Flag]]:
    """The series to import and the flags overridden.

    Parameters
    ----------
    review
        The review of the same inputs.
    selected
        Series Instance UIDs chosen.
    references
        Add what the chosen series reference (transitively).
    override
        Import series whose flags need an override.

    Raises
    ------
    SelectionError
        When nothing is selected or a UID is not among the reviewed series.
    SubjectMismatchError
        When selected series need an override and ``override`` is false.
    """
    if not selected:
        raise SelectionError("no series selected: nothing to import")
    known = review.series_by_uid()
    unknown = [uid for uid in selected if uid not in known]
    if unknown:
        raise SelectionError(
            f"series {', '.join(unknown)} not among the reviewed files ({len(known)} series "
            "found; `dicomflow import PATH --review` lists them)"
        )
    chosen = review.closure(selected) if references else set(selected)
    return chosen, review.check_selection(chosen, override=override)


def record_override(
    audit: Audit,
    actor: str,
    project: str,
    target: str,
    flags: Sequence[Flag],
    *,
    address: str = "",
) -> None:
    """Record in the audit trail that ``actor`` imported flagged series on purpose."""
    detail = "; ".join(f.message for f in flags)
    audit.record(
        actor,
        AuditAction.IMPORT_OVERRIDE,
        project=project,
        target=target,
        detail=detail[:4000],
        address=address,
    )
