"""What a thumbnail attempt produced."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = ["ThumbnailKind", "ThumbnailResult"]


class ThumbnailKind(StrEnum):
    """What the PNG shows."""

    #: A rendered frame of the series itself (grayscale PNGs are single-channel).
    IMAGE = "image"
    #: A referenced image with segments or contours drawn over it.
    OVERLAY = "overlay"
    #: A labelled placeholder (e.g. a SEG whose reference series was not provided).
    PLACEHOLDER = "placeholder"
    #: No PNG at all; :attr:`ThumbnailResult.reason` says why.
    NONE = "none"


@dataclass(frozen=True, slots=True)
class ThumbnailResult:
    """The outcome of :func:`dicomflow.thumbnails.render_series_thumbnail`.

    Attributes
    ----------
    png
        The PNG bytes, ``None`` when no thumbnail could be made.
    kind
        What the PNG shows.
    reason
        How it was made (e.g. ``"window 40/400"``) or, with no PNG,
        ``"no thumbnail: <reason>"``.
    path
        The file whose pixels were shown (for an overlay: the referenced image).
    sop_instance_uid
        That file's SOP Instance UID.
    frame
        0-based frame index that was decoded.
    size
        ``(width, height)`` of the PNG.
    """

    png: bytes | None
    kind: ThumbnailKind
    reason: str
    path: Path | None = None
    sop_instance_uid: str | None = None
    frame: int | None = None
    size: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        """True when a PNG was produced (placeholders included)."""
        return self.png is not None

    @classmethod
    def none(cls, reason: str, path: Path | None = None) -> ThumbnailResult:
        """A result without PNG; ``reason`` is prefixed with ``"no thumbnail: "``."""
        return cls(None, ThumbnailKind.NONE, f"no thumbnail: {reason}", path=path)
