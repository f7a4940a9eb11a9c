"""Lambda SnapStart: what a restored execution environment must not reuse from the snapshot.

With SnapStart (ingest and sync, `infra/constants.py` SNAPSTART_FUNCTIONS) Lambda runs INIT once,
when a version is published, and restores every later cold start from that memory snapshot. The
handlers build their clients, secrets and settings lazily (`functools.cache`), so a snapshot normally
holds none; `forget_after_restore` registers the caches with the runtime's after-restore hook anyway, so
a secret, a credential or a connection can never be shared between restored environments, and reseeds
`random` (the same seed in every restored copy would repeat backoff jitter). Outside a SnapStart
runtime (`snapshot_restore_py` is not importable: tests, the local stack) it does nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol


class _Cache(Protocol):
    def cache_clear(self) -> None: ...


def _forget(caches: tuple[_Cache, ...]) -> Callable[[], None]:
    def after_restore() -> None:
        random.seed()
        for cache in caches:
            cache.cache_clear()

    return after_restore


def forget_after_restore(*caches: _Cache) -> bool:
    """Clear `caches` (and reseed `random`) after each SnapStart restore; False outside SnapStart."""
    try:
        from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError:  # not a SnapStart runtime (tests, the local stack)
        return False
    register_after_restore(_forget(caches))
    return True
