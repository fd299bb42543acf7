"""Import DICOM from files, folders and zip archives into the spool (CLI and uploads)."""

from dicomflow.importer.archives import ArchiveError, UnpackBudget, unpack_zip
from dicomflow.importer.importer import (
    Importer,
    ImportProgress,
    ImportRefusedError,
    import_paths,
    normalize_extension,
)
from dicomflow.importer.report import (
    FailedInput,
    FailureKind,
    IgnoredFile,
    IgnoreReason,
    ImportOutcome,
    ImportReport,
    SeriesSummary,
)

__all__ = [
    "ArchiveError",
    "FailedInput",
    "FailureKind",
    "IgnoreReason",
    "IgnoredFile",
    "ImportOutcome",
    "ImportProgress",
    "ImportRefusedError",
    "ImportReport",
    "Importer",
    "SeriesSummary",
    "UnpackBudget",
    "import_paths",
    "normalize_extension",
    "unpack_zip",
]
