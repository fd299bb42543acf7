"""The store to the PACS as the settings choose it: STOW-RS requests or C-STORE associations."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dicomflow.config import Settings
from dicomflow.pacs.client import DicomWebClient, StoreResult
from dicomflow.pacs.dimse import DimseStoreClient

__all__ = ["store_instances"]


def store_instances(
    settings: Settings, dicomweb: DicomWebClient, files: Sequence[Path]
) -> StoreResult:
    """Store ``files`` in the PACS by ``pacs.protocol``, several requests at once.

    ``dicomweb``: requests of ``pacs.stow_batch_size`` instances, ``pacs.stow_concurrency``
    in flight (a PACS stores them in parallel). ``dimse``: the files shared out between
    ``pacs.dimse_associations`` C-STORE associations, each sending its share in order.

    Returns
    -------
    StoreResult
        Every instance's outcome.

    Raises
    ------
    PacsUnavailableError
        When the PACS cannot be reached after the retries.
    """
    result = StoreResult()
    if not files:
        return result
    pacs = settings.pacs
    if pacs.protocol == "dimse":
        store = DimseStoreClient.from_settings(settings).store
        share = -(-len(files) // min(pacs.dimse_associations, len(files)))
        chunks = [files[start : start + share] for start in range(0, len(files), share)]
    else:
        store = dicomweb.store
        size = pacs.stow_batch_size
        chunks = [files[start : start + size] for start in range(0, len(files), size)]
    workers = len(chunks) if pacs.protocol == "dimse" else pacs.stow_concurrency
    with ThreadPoolExecutor(min(workers, len(chunks)), "pacs-store") as pool:
        for outcome in pool.map(store, chunks):
            result.merge(outcome)
    return result
