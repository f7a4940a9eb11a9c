"""What `calehr config validate|schema` does (registered by `cli.commands.config`): check a clinic mapping
file in one pass and summarise it; the mapping's JSON Schema. The rules themselves are `shared.clinic`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.clinic.load import schema_text
from shared.clinic.mapping import ConfigError
from shared.clinic.source import load_config

__all__ = ["schema_text", "validation"]


def validation(file: Path) -> dict[str, Any]:
    """`{"file", "valid": False, "problems"}` for an invalid mapping, else `valid: True` with its counts."""
    try:
        config = load_config(f"file:{file}")
    except ConfigError as exc:
        return {"file": str(file), "valid": False, "problems": list(exc.problems)}
    return {
        "file": str(file),
        "valid": True,
        "revision": config.revision,
        "event_types": len(config.event_types),
        "practitioners": len(config.practitioners),
        "routing_forms": len(config.routing_forms),
        "ehr_routes": sorted({m.ehr for m in config.event_types}),
    }
