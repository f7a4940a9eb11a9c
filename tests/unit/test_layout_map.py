"""The README's layout section is a map of the tree: one line per folder, each naming a folder that exists,
and every folder that holds code (and each of tests/) has its line."""

from __future__ import annotations

import re

from tests.support.paths import REPO_ROOT

CODE = ("shared", "functions", "infra", "cli", "devstack", "bench", "tools")
SKIPPED = {"__pycache__", "node_modules", "results"}


def _map() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Layout") : readme.index("## Design choices worth knowing")]
    (block,) = re.findall(r"```\n(.*?)```", section, flags=re.DOTALL)
    return [line.split()[0] for line in block.splitlines() if line.strip()]


def _code_folders() -> set[str]:
    folders = set()
    for root in CODE:
        for path in (REPO_ROOT / root).rglob("*.py"):
            relative = path.parent.relative_to(REPO_ROOT)
            if not SKIPPED & set(relative.parts):
                folders.add(f"{relative.as_posix()}/")
    folders |= {f"tests/{p.name}/" for p in (REPO_ROOT / "tests").iterdir() if p.is_dir() and p.name not in SKIPPED}
    return folders


def test_each_line_of_the_map_names_one_existing_folder_once() -> None:
    folders = _map()
    assert folders and all(folder.endswith("/") for folder in folders)
    assert len(folders) == len(set(folders)), "a folder is on more than one line"
    assert [folder for folder in folders if not (REPO_ROOT / folder).is_dir()] == []


def test_every_folder_with_code_and_every_test_folder_is_on_the_map() -> None:
    assert sorted(_code_folders() - set(_map())) == []
