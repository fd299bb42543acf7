"""Confirm in the PACS that an import's instances arrived intact.

An import reports every instance it made durable with a digest of its dataset (the bytes after
the file meta, which the PACS keeps as sent while writing its own file meta). Verification waits
until the import's batches are processed, then asks the PACS for each series' instances
(QIDO-RS) and retrieves each instance (WADO-RS) to compare digests. Its outcome joins the import
report: Analysed / Uploaded / Imported / Verified counts, and each instance missing or different.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from dicomflow.dicom.instance import dataset_digest
from dicomflow.importer.report import ImportReport
from dicomflow.spool.records import BatchState
from dicomflow.spool.store import Spool, UnknownBatchError, utc_now

__all__ = ["PacsReader", "Verification", "VerifyState", "counts", "verify_import"]

LOGGER = logging.getLogger(__name__)


class VerifyState(StrEnum):
    """The verdict of a verification."""

    #: Every imported instance is in the PACS with the same dataset bytes.
    VERIFIED = "verified"
    #: Some are missing or different, and every batch has finished (done or failed).
    INCOMPLETE = "incomplete"
    #: Some batches are still being processed: ask again later.
    PROCESSING = "processing"


class PacsReader(Protocol):
    """What verification needs of :class:`~dicomflow.pacs.client.DicomWebClient`."""

    def series_instances(self, study_uid: str, series_uid: str) -> list[str]: ...

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes: ...


@dataclass
class Verification:
    """What the PACS holds of an import.

    Attributes
    ----------
    state
        The verdict.
    expected
        Instances the import made durable.
    verified
        Instances the PACS holds with the same dataset digest.
    missing
        SOP Instance UIDs the PACS does not hold (still to come while ``processing``).
    different
        SOP Instance UIDs the PACS holds with other bytes (a conflict kept the older one).
    batches
        Each batch's state; ``failed`` ones carry ``failures``.
    failures
        ``batch id: step: reason`` of each failed batch (a retry re-runs it).
    """

    state: VerifyState
    expected: int
    verified: int = 0
    missing: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    batches: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    checked_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able mapping (stored in the import report)."""
        return asdict(self)

    def lines(self) -> list[str]:
        """The verification as text lines."""
        out = [
            f"verification: {self.state.value.upper()}: {self.verified} of {self.expected} "
            f"instance(s) confirmed in the PACS (SOP Instance UID and dataset SHA-256)"
        ]
        if self.missing:
            what = "not yet" if self.state is VerifyState.PROCESSING else "MISSING"
            sample = ", ".join(self.missing[:20])
            out.append(f"  {what} in the PACS ({len(self.missing)}): {sample}")
        if self.different:
            sample = ", ".join(self.different[:20])
            out.append(f"  DIFFERENT in the PACS ({len(self.different)}): {sample}")
        out.extend(f"  batch failed: {f}" for f in self.failures)
        return out


def counts(report: ImportReport) -> dict[str, int | None]:
    """Analysed / Uploaded / Imported / Verified, as the page and the CLI show them.

    ``uploaded`` is ``None`` for an import that did not come from the uploads area, and
    ``verified`` while no verification ran.
    """
    verified = report.verification.get("verified") if report.verification else None
    return {
        "analysed": report.found,
        "uploaded": report.uploaded if report.uploaded else None,
        "imported": report.imported,
        "verified": int(verified) if verified is not None else None,
    }


def _batch_states(spool: Spool, batch_ids: list[str]) -> tuple[dict[str, str], list[str]]:
    states: dict[str, str] = {}
    failures: list[str] = []
    for batch_id in batch_ids:
        try:
            record = spool.batch(batch_id)
        except UnknownBatchError:
            states[batch_id] = "unknown"
            continue
        states[batch_id] = record.state.value
        if record.state is BatchState.FAILED:
            failures.append(f"{batch_id}: {record.failed_step}: {record.failure}")
    return states, failures


_FINISHED = {BatchState.DONE.value, BatchState.FAILED.value, "unknown"}


def verify_import(
    report: ImportReport,
    spool: Spool,
    pacs: PacsReader,
    *,
    wait: float = 0.0,
    poll: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Verification:
    """Check every instance of ``report`` in the PACS; store the outcome in the report too.

    Parameters
    ----------
    report
        The import's report (its ``instances`` and ``batches``).
    spool
        The spool holding the import's batches (to know whether they are processed).
    pacs
        The PACS client.
    wait
        Seconds to wait for the batches to finish before checking; ``0``: check at once.
    poll
        Seconds between looks at the batches while waiting.
    sleep
        How to wait (tests pass their own).

    Returns
    -------
    Verification
        ``verified`` when every instance is in the PACS with the same dataset digest.
    """
    deadline = time.monotonic() + wait
    states, failures = _batch_states(spool, report.batches)
    while any(s not in _FINISHED for s in states.values()) and time.monotonic() < deadline:
        sleep(poll)
        states, failures = _batch_states(spool, report.batches)
    processing = any(s not in _FINISHED for s in states.values())

    by_series: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for inst in report.instances:
        key = (inst.study_instance_uid, inst.series_instance_uid)
        by_series.setdefault(key, []).append((inst.sop_instance_uid, inst.digest))
    verified = 0
    missing: list[str] = []
    different: list[str] = []
    for (study, series), instances in by_series.items():
        held = set(pacs.series_instances(study, series))
        for sop, digest in instances:
            if sop not in held:
                missing.append(sop)
                continue
            theirs = dataset_digest(pacs.retrieve_instance(study, series, sop))
            if theirs == digest:
                verified += 1
            else:
                different.append(sop)
    if verified == len(report.instances):
        state = VerifyState.VERIFIED
    elif processing:
        state = VerifyState.PROCESSING
    else:
        state = VerifyState.INCOMPLETE
    outcome = Verification(
        state,
        len(report.instances),
        verified,
        missing,
        different,
        states,
        failures,
        checked_at=utc_now(),
    )
    LOGGER.info("%s", outcome.lines()[0])
    report.verification = outcome.as_dict()
    return outcome
