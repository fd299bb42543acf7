"""The steps of ``service-process-incoming-dcm`` as plain functions over one spooled batch.

Each step takes the settings and a batch id, re-reads what it needs from the spool (the source
of truth until the batch is finished) and returns a small JSON-able summary. Every step can be
re-run: object keys and document ids come from DICOM UIDs, PACS writes skip what is stored.
"""

from dicomflow.pipeline.steps import (
    StepError,
    announce_batch,
    announce_quietly,
    finish,
    index_series,
    make_thumbnails,
    map_series,
    read_batch,
    record_validation,
    store_to_pacs,
    validate,
)

__all__ = [
    "StepError",
    "announce_batch",
    "announce_quietly",
    "finish",
    "index_series",
    "make_thumbnails",
    "map_series",
    "read_batch",
    "record_validation",
    "store_to_pacs",
    "validate",
]
