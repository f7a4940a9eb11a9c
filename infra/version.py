"""The bridge's version: written once, in pyproject.toml, and read from there by the CDK app."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Final

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
#: Published as the stack tag `VERSION_TAG` and the stack output `BridgeVersion` (docs/deploy.md, Upgrading).
VERSION: Final[str] = str(tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["version"])
VERSION_TAG: Final = "CalEhrBridgeVersion"
