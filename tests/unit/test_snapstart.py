"""shared.snapstart: after a SnapStart restore the handlers' caches are empty and `random` is reseeded."""

from __future__ import annotations

import ast
import random
import sys
import types
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

from shared.snapstart import forget_after_restore


def test_outside_a_snapstart_runtime_nothing_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)
    assert forget_after_restore() is False


def test_after_restore_the_caches_are_cleared_and_random_reseeded(monkeypatch: pytest.MonkeyPatch) -> None:
    hooks: list[Callable[[], None]] = []
    runtime = types.ModuleType("snapshot_restore_py")
    runtime.register_after_restore = hooks.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", runtime)
    built: list[int] = []

    @cache
    def client() -> int:
        built.append(1)
        return len(built)

    assert client() == 1
    assert forget_after_restore(client) is True
    (hook,) = hooks
    random.seed(7)
    snapshot_draw = random.random()
    random.seed(7)  # the state every restored copy would share
    hook()
    assert client() == 2  # built again, not taken from the snapshot
    assert random.random() != snapshot_draw


@pytest.mark.parametrize("handler", ["ingest", "sync"])
def test_the_snapstart_handlers_register_every_cached_adapter(handler: str) -> None:
    """Every module-level `@cache` of a SnapStart handler is passed to `forget_after_restore` at import."""
    source = (Path(__file__).resolve().parents[2] / "functions" / handler / "handler.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    cached = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(isinstance(d, ast.Name) and d.id == "cache" for d in node.decorator_list)
    }
    calls = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", "") == "forget_after_restore"
    ]
    assert len(calls) == 1
    passed = {arg.id for arg in calls[0].args if isinstance(arg, ast.Name)}
    # `_runtime` is reached through `_service.cache_clear()`
    assert cached - {"_runtime"} <= passed
