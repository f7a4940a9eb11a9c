"""`python -m tools.layout` on a small tree of its own: rooms are package folders, arrows count module
imports between them (lazy ones too, annotation-only ones not), cycles between rooms are named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO_ROOT
from tools.layout import import_graph, layout, modules, render

FILES = {
    "app/__init__.py": "",
    "app/core/__init__.py": "",
    "app/core/rules.py": "import json\n",
    "app/core/state.py": "from app.core import rules\nfrom app.flow.run import go  # a way back: a cycle\n",
    "app/flow/__init__.py": "",
    "app/flow/run.py": (
        "from typing import TYPE_CHECKING\n"
        "from app.core.rules import *\n"
        "from . import helpers\n"
        "if TYPE_CHECKING:\n    from app.root import Settings\n"
        "def go():\n    from app.core import state\n"
    ),
    "app/flow/helpers.py": "",
    "app/root.py": "",
}


def _tree(tmp_path: Path) -> Path:
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_given_a_tree_then_rooms_arrows_and_cycles(tmp_path: Path) -> None:
    known = modules(_tree(tmp_path), ["app"])
    graph = import_graph(known)
    assert graph["app.flow.run"] == {"app.core.rules", "app.flow.helpers", "app.core.state"}  # not app.root
    result = layout(depth=2, known=known)
    assert set(result.rooms) == {"app", "app/core", "app/flow"}
    assert result.rooms["app/core"][0] == 3  # __init__, rules, state
    assert result.arrows == {("app/flow", "app/core"): 2, ("app/core", "app/flow"): 1}
    assert result.cycles() == [["app/core", "app/flow"]]
    text = render(result)
    assert "app/flow -> app/core (2)" in " ".join(text.split())
    assert "app/core <-> app/flow" in text


def test_the_command_prints_the_projects_rooms() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.layout"], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.startswith("Rooms (")
    assert "shared/sync" in result.stdout and "Arrows (" in result.stdout
