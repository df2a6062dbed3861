"""JSON Schema files for the records, generated from the Pydantic models (never edited by hand)."""

from __future__ import annotations

import json
from pathlib import Path

from gamelog.records import json_schemas
from gamelog.write.atomic import write_text


def _render(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        write_text(out / name, _render(schema))
    return list(json_schemas())


def check_schemas(out: Path) -> list[str]:
    """Names of schema files that are missing or differ from what the models generate."""
    stale = []
    for name, schema in json_schemas().items():
        file = out / name
        if not file.exists() or file.read_text(encoding="utf-8") != _render(schema):
            stale.append(name)
    return stale
