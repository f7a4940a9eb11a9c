"""The audit archive bucket (S3 Object Lock, COMPLIANCE): each archive object written once, never overwritten."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from shared.archive.worm_copy import LOCK_MODE, ArchiveObject

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class ArchiveUnavailableError(Exception):
    """S3 refused or failed the write; the stream record is retried."""


class AuditArchive:
    """The archive bucket (S3 Object Lock, COMPLIANCE) and how long each object is locked."""

    def __init__(self, bucket: str, *, retention_days: int, client: S3Client | None = None) -> None:
        self._bucket = bucket
        self.retention = timedelta(days=retention_days)
        self._client: S3Client = client or boto3.client("s3")

    def store(self, item: ArchiveObject) -> bool:
        """Write `item` once; False when it is already there (a redelivered stream record)."""
        try:
            self._client.put_object(
                Bucket=self._bucket,
                Key=item.key,
                Body=item.body,
                ContentType="application/json",
                ObjectLockMode=LOCK_MODE,
                ObjectLockRetainUntilDate=item.retain_until,
                # Object Lock requires an integrity checksum on the request.
                ChecksumAlgorithm="SHA256",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                return False
            raise ArchiveUnavailableError(type(exc).__name__) from exc
        except BotoCoreError as exc:
            raise ArchiveUnavailableError(type(exc).__name__) from exc
        return True
