"""The audit archive bucket (S3 Object Lock, COMPLIANCE): each archive object written once, never overwritten."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

import boto3
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


#: S3 Object Lock mode of every archived object: COMPLIANCE (nobody, root included, shortens or removes it).
LOCK_MODE: Literal["COMPLIANCE"] = "COMPLIANCE"


@dataclass(frozen=True, slots=True)
class ArchiveObject:
    """One archived object: its key, its bytes and how long it is locked."""

    key: str
    body: bytes
    retain_until: datetime


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
