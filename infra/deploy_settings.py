"""A stage's deploy settings in a file the operator commits: `deploy/<stage>.json`.

The file holds the same keys as `-c key=value` (docs/deploy.md, "Deploy settings"), so every deploy of
a stage starts from the same settings and a later `cdk deploy -c stage=prod` cannot silently drop the
EHR URL, the on-call subscribers or who may assume the operator roles. A `-c` value still wins for that
one synth, and the synth says so; a `-c` value the file does not hold is named too, since the next
deploy without it falls back to the default.

    {
      "ehrBaseUrl": "https://fhir.ehr.example/r4",
      "alarmEmail": ["oncall@clinic.example"],
      "operatorAdminPrincipals": ["arn:aws:iam::111122223333:role/ClinicOps"]
    }

Unknown keys are refused with the nearest known one (a misspelt key would otherwise be ignored, the
very silent drop this file exists to prevent).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.constants import DEFAULT_STAGE
from infra.deployment import CONTEXT_KEYS, ConfigError

#: Where the stage files live unless `-c deployDir=...` names another folder.
DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy"
DEPLOY_DIR_KEY = "deployDir"
#: Every key a stage file may hold: the context keys but the stage (the file's name is the stage).
SETTING_KEYS = tuple(key for key in CONTEXT_KEYS if key != "stage")


@dataclass(frozen=True)
class DeploySettings:
    """The context a synth uses: the stage file's settings with the `-c`/cdk.json values over them."""

    context: dict[str, Any]
    path: Path
    found: bool
    notes: tuple[str, ...] = field(default=())


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def read_stage_file(path: Path) -> dict[str, Any]:
    """The settings in one stage file; ConfigError naming the file and what is wrong with it."""
    where = _display(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror})") from None
    except ValueError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: must be a JSON object of settings (docs/deploy.md, Deploy settings)")
    for key in document:
        if key == "stage":
            raise ConfigError(f"{where}: 'stage' is the file's name, not a setting in it")
        if key not in SETTING_KEYS:
            near = difflib.get_close_matches(key, SETTING_KEYS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{where}: unknown setting {key!r}{hint}")
    return {key: _as_context(value) for key, value in document.items()}


def _as_context(value: Any) -> Any:
    """A file's value in the form `-c` gives it: lists as comma-separated text, objects as JSON."""
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def resolve(context: Mapping[str, Any], directory: Path | None = None) -> DeploySettings:
    """The stage file's settings under the values given with `-c` (or in cdk.json), and notes on both."""
    stage = str(context.get("stage") or DEFAULT_STAGE)
    folder = directory or Path(str(context.get(DEPLOY_DIR_KEY) or DEPLOY_DIR))
    path = folder / f"{stage}.json"
    where = _display(path)
    found = path.is_file()
    stored = read_stage_file(path) if found else {}
    given = {key: context[key] for key in SETTING_KEYS if context.get(key) is not None}
    notes = []
    if not found:
        notes.append(
            f"note: no {where}: this synth uses -c values and defaults only; keep the stage's settings "
            "in that file so that every later deploy uses them (docs/deploy.md, Deploy settings)."
        )
    for key, value in given.items():
        if key not in stored and found:
            notes.append(f"note: -c {key} is not in {where}: a later deploy without it drops it.")
        elif key in stored and str(stored[key]) != str(value):
            notes.append(f"note: -c {key} overrides {where} for this synth only.")
    merged = {**dict(context), **stored, **given}
    return DeploySettings(context=merged, path=path, found=found, notes=tuple(notes))
