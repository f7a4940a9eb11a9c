"""Lambda SnapStart: what a restored execution environment must not reuse from the snapshot.

With SnapStart (ingest and sync, `infra/constants.py` SNAPSTART_FUNCTIONS) Lambda runs INIT once,
when a version is published, and restores every later cold start from that memory snapshot. The
handlers build their clients, secrets and settings lazily (`shared.composition.Root`), so a snapshot
normally holds none; every `Root` registers itself here anyway, so that after each restore it is reset
(a secret, a credential or a connection can never be shared between restored environments) and `random`
is reseeded (the same seed in every restored copy would repeat backoff jitter). Outside a SnapStart
runtime (`snapshot_restore_py` is not importable: tests, the local stack) it does nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol


class Resettable(Protocol):
    def reset(self) -> None: ...


def _forget(roots: tuple[Resettable, ...]) -> Callable[[], None]:
    def after_restore() -> None:
        random.seed()
        for root in roots:
            root.reset()

    return after_restore


def forget_after_restore(*roots: Resettable) -> bool:
    """Reset `roots` (and reseed `random`) after each SnapStart restore; False outside SnapStart."""
    try:
        from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError:  # not a SnapStart runtime (tests, the local stack)
        return False
    register_after_restore(_forget(roots))
    return True
