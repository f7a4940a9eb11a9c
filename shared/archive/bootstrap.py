"""The archive function's composition root: the WORM bucket, built once per container."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import ArchiveSettings
from shared.stores.archive import AuditArchive


@dataclass(frozen=True, slots=True)
class ArchiveApp:
    settings: ArchiveSettings
    archive: AuditArchive


def bootstrap(settings: ArchiveSettings) -> ArchiveApp:
    return ArchiveApp(settings=settings, archive=AuditArchive(settings.bucket, retention_days=settings.retention_days))
