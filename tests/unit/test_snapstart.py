"""shared.snapstart: after a SnapStart restore every composition root is reset and `random` is reseeded."""

from __future__ import annotations

import ast
import random
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.composition import Root
from shared.snapstart import forget_after_restore


def test_outside_a_snapstart_runtime_nothing_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)
    assert forget_after_restore() is False


def test_after_restore_every_root_is_reset_and_random_reseeded(monkeypatch: pytest.MonkeyPatch) -> None:
    hooks: list[Callable[[], None]] = []
    runtime = types.ModuleType("snapshot_restore_py")
    runtime.register_after_restore = hooks.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", runtime)
    built: list[int] = []

    def build() -> int:
        built.append(1)
        return len(built)

    root = Root(build)  # registers itself with the runtime
    assert root.get() == 1 and root.get() == 1  # built once
    (hook,) = hooks
    random.seed(7)
    snapshot_draw = random.random()
    random.seed(7)  # the state every restored copy would share
    hook()
    assert root.get() == 2  # built again, not taken from the snapshot
    assert random.random() != snapshot_draw


@pytest.mark.parametrize("handler", ["ingest", "sync"])
def test_the_snapstart_handlers_build_everything_through_one_root(handler: str) -> None:
    """A SnapStart handler caches nothing of its own: every object comes from its one module-level `Root`
    (which SnapStart resets after each restore), none from a `functools.cache`."""
    source = (Path(__file__).resolve().parents[2] / "functions" / handler / "handler.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    cached = [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and any("cache" in ast.unparse(decorator) for decorator in node.decorator_list)
    ]
    roots = [
        node
        for node in tree.body
        if isinstance(node, ast.AnnAssign | ast.Assign)
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", "") == "Root"
    ]
    assert cached == []
    assert len(roots) == 1
