"""The one client of the object store (S3 API through the ``minio`` SDK)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO, cast

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error

from dicomflow.config import Settings


class ObjectStoreError(Exception):
    """The object store refused an operation."""


class ObjectNotFoundError(LookupError):
    """The key is not in the bucket."""


@dataclass(frozen=True)
class ObjectInfo:
    """An object as listed: key, size in bytes, last modification time (UTC)."""

    key: str
    size: int
    last_modified: datetime | None


class ObjectStore:
    """Buckets per project and the objects in them.

    Parameters
    ----------
    client
        A ``minio.Minio`` client on the S3 endpoint.
    bucket_prefix
        Buckets are named ``<bucket_prefix><project>``.
    """

    def __init__(self, client: Minio, bucket_prefix: str) -> None:
        self._client = client
        self._prefix = bucket_prefix
        # Buckets are never removed by the platform: one seen is not asked about again (a
        # step asked once per series and project, a request each).
        self._buckets: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> ObjectStore:
        """The store the settings describe."""
        s3 = settings.s3
        client = Minio(
            s3.endpoint,
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            secure=s3.secure,
            region=s3.region,
        )
        return cls(client, s3.bucket_prefix)

    def reachable(self) -> bool:
        """Whether the server answers an authenticated request (the stack's health check).

        Returns
        -------
        bool
            ``False`` when it is down, refuses the credentials or answers nonsense.
        """
        try:
            self._client.list_buckets()
        except (MinioException, OSError, ValueError, urllib3.exceptions.HTTPError):
            # urllib3's MaxRetryError (nothing listens) is none of the others.
            return False
        return True

    def bucket(self, project: str) -> str:
        """The bucket name of a project."""
        return f"{self._prefix}{project}"

    def ensure_bucket(self, project: str) -> str:
        """Create the project's bucket if it is missing; return its name."""
        name = self.bucket(project)
        if name in self._buckets:
            return name
        if not self._client.bucket_exists(name):
            try:
                self._client.make_bucket(name)
            except S3Error as exc:
                # Two tasks may create the same bucket at once.
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        self._buckets.add(name)
        return name

    def put_bytes(self, project: str, key: str, data: bytes, content_type: str) -> None:
        """Write an object (replacing one at the same key)."""
        self._client.put_object(
            self.bucket(project), key, io.BytesIO(data), len(data), content_type=content_type
        )

    def get_bytes(self, project: str, key: str) -> bytes:
        """Read an object whole."""
        try:
            response = self._client.get_object(self.bucket(project), key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise ObjectNotFoundError(f"{self.bucket(project)}/{key} does not exist") from exc
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def exists(self, project: str, key: str) -> bool:
        """Whether the object exists.

        Raises
        ------
        ObjectStoreError
            When the store refuses the question or cannot be reached.
        """
        try:
            self._client.stat_object(self.bucket(project), key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                return False
            raise ObjectStoreError(
                f"{self.bucket(project)}/{key}: {exc.code} {exc.message}"
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ObjectStoreError(f"the object store cannot be reached: {exc}") from exc
        return True

    def presigned_get(self, project: str, key: str, expires: timedelta) -> str:
        """A URL that reads the object without credentials until it expires."""
        return self._client.presigned_get_object(self.bucket(project), key, expires=expires)

    def list_keys(self, project: str, prefix: str = "") -> list[str]:
        """Keys under a prefix, recursively."""
        return [
            obj.object_name
            for obj in self._client.list_objects(
                self.bucket(project), prefix=prefix, recursive=True
            )
            if obj.object_name is not None
        ]

    def list_objects(self, project: str, prefix: str = "") -> list[ObjectInfo]:
        """Objects under a prefix, recursively, with size and time; none when no bucket."""
        try:
            return [
                ObjectInfo(obj.object_name, obj.size or 0, obj.last_modified)
                for obj in self._client.list_objects(
                    self.bucket(project), prefix=prefix, recursive=True
                )
                if obj.object_name is not None
            ]
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                return []
            raise

    def put_file(
        self, project: str, key: str, path: Path, content_type: str = "application/octet-stream"
    ) -> None:
        """Write a local file as an object (multipart for large files, by the SDK)."""
        self._client.fput_object(self.bucket(project), key, str(path), content_type=content_type)

    def put_stream(
        self, project: str, key: str, stream: BinaryIO, content_type: str, part_size: int = 16 << 20
    ) -> None:
        """Write an object from a stream of unknown length (multipart, ``part_size`` each).

        The object appears only once whole: a writer that dies leaves none.
        """
        self._client.put_object(
            self.bucket(project), key, stream, -1, content_type=content_type, part_size=part_size
        )

    @contextmanager
    def open_stream(self, project: str, key: str) -> Iterator[BinaryIO]:
        """Read an object as a stream.

        Raises
        ------
        ObjectNotFoundError
            When the object does not exist.
        """
        try:
            response = self._client.get_object(self.bucket(project), key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise ObjectNotFoundError(f"{self.bucket(project)}/{key} does not exist") from exc
            raise
        try:
            yield cast(BinaryIO, response)
        finally:
            response.close()
            response.release_conn()

    def download_file(self, project: str, key: str, path: Path) -> None:
        """Read an object into a local file.

        Raises
        ------
        ObjectNotFoundError
            When the object does not exist.
        """
        try:
            self._client.fget_object(self.bucket(project), key, str(path))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise ObjectNotFoundError(f"{self.bucket(project)}/{key} does not exist") from exc
            raise

    def remove(self, project: str, keys: Iterable[str]) -> int:
        """Delete objects (missing ones are no error); return how many were asked for."""
        wanted = [DeleteObject(key) for key in keys]
        if not wanted:
            return 0
        errors = list(self._client.remove_objects(self.bucket(project), wanted))
        if errors:
            first = errors[0]
            raise ObjectStoreError(
                f"{len(errors)} of {len(wanted)} objects of {self.bucket(project)} were not "
                f"deleted; first: {first.name}: {first.code} {first.message}"
            )
        return len(wanted)
