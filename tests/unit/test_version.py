"""One version: pyproject.toml, the installed `calehr --version`, and the CHANGELOG's newest entry."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from cli.app import main

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def test_calehr_version_prints_the_pyproject_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert version("cal-ehr-bridge") == VERSION  # a stale editable install fails here: `make deps`
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"calehr {VERSION}"


def test_the_changelog_starts_with_this_version_and_names_what_breaks_a_deployed_stack() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (\S+)", changelog, flags=re.MULTILINE)
    assert headings and headings[0] == VERSION, headings
    newest = changelog.split(f"## {VERSION}", 1)[1].split("\n## ", 1)[0]
    assert "### Breaking for a deployed stack" in newest
