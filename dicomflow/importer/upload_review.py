"""Reviews of files in the uploads area, for the review page.

The page reviews on the server right after the upload (see ``docs/importing.md`` for why not
in the browser): the selected uploads are downloaded into a scratch folder, their headers read,
the scratch removed. The review is kept in the project's bucket under
``import-reviews/<review id>.json`` so the import that follows checks its selection against
exactly what the user saw, without reading the files again.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from dicomflow.config import Settings
from dicomflow.importer.review import ExpectedSubject, Review
from dicomflow.importer.review_files import review_paths
from dicomflow.storage.client import ObjectNotFoundError, ObjectStore
from dicomflow.uploads.area import UploadArea

__all__ = ["REVIEWS_PREFIX", "read_review", "review_key", "review_uploads", "store_review"]

REVIEWS_PREFIX = "import-reviews/"


def review_key(review_id: str) -> str:
    """The object key of a kept review."""
    return f"{REVIEWS_PREFIX}{review_id}.json"


def review_uploads(
    settings: Settings,
    area: UploadArea,
    project: str,
    names: Sequence[str],
    *,
    extension: str,
    expected: ExpectedSubject | None = None,
    held: Callable[[str], bool] | None = None,
) -> Review:
    """Review uploaded files (``<upload id>`` or ``<upload id>/<path>``): headers only.

    Raises
    ------
    UnknownUploadError
        When a name matches nothing in the uploads area.
    """
    entries = area.select(project, names)
    settings.imports_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="upload-review-", dir=settings.imports_dir))
    try:
        for entry in entries:
            area.download(project, entry, scratch)
        # Named as the page lists them: <upload id>/<path>.
        folders = sorted(p for p in scratch.iterdir() if p.is_dir())
        review = review_paths(
            settings, folders, extension=extension, expected=expected, held=held, names=names
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return review


def store_review(store: ObjectStore, project: str, review_id: str, review: Review) -> None:
    """Keep a review in the project's bucket for the import that follows."""
    store.put_bytes(
        project, review_key(review_id), json.dumps(review.as_dict()).encode(), "application/json"
    )


def read_review(store: ObjectStore, project: str, review_id: str) -> Review | None:
    """A kept review, or ``None`` when there is none under that id."""
    try:
        raw = store.get_bytes(project, review_key(review_id))
    except ObjectNotFoundError:
        return None
    return Review.from_dict(json.loads(raw))
