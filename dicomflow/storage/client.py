"""The one client of the object store (S3 API through the ``minio`` SDK)."""

from __future__ import annotations

import io
from datetime import timedelta

from minio import Minio
from minio.error import S3Error

from dicomflow.config import Settings


class ObjectNotFoundError(LookupError):
    """The key is not in the bucket."""


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

    def bucket(self, project: str) -> str:
        """The bucket name of a project."""
        return f"{self._prefix}{project}"

    def ensure_bucket(self, project: str) -> str:
        """Create the project's bucket if it is missing; return its name."""
        name = self.bucket(project)
        if not self._client.bucket_exists(name):
            try:
                self._client.make_bucket(name)
            except S3Error as exc:
                # Two tasks may create the same bucket at once.
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
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
        """Whether the object exists."""
        try:
            self._client.stat_object(self.bucket(project), key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                return False
            raise
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
