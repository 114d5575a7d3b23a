"""docker-compose.yml as Compose reads it: YAML with merge keys, then ``${VAR}`` interpolation.

No Docker engine (and no compose plugin) runs here, so the tests validate the file the way the
Compose specification defines it: the raw file and the interpolated one against the spec's
JSON Schema (vendored in check-jsonschema), then the cross-references Compose checks itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt},
# $NAME and the escape $$ (Compose specification, "Interpolation").
_TOKEN = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    """A required variable is missing, as `docker compose` would report it."""


def interpolate_string(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        unset_or_empty = value is None or (op is not None and op.startswith(":") and not value)
        if op in (":-", "-"):
            return arg if unset_or_empty else str(value)
        if op in (":?", "?"):
            if unset_or_empty:
                raise InterpolationError(f"{name}: {arg or 'required'}")
            return str(value)
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return value or ""

    return _TOKEN.sub(replace, text)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string value (Compose does not interpolate keys)."""
    if isinstance(node, str):
        return interpolate_string(node, env)
    if isinstance(node, list):
        return [interpolate(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    return node


def load(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The file as parsed YAML (merge keys resolved), before interpolation."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


@cache
def spec_schema() -> dict[str, Any]:
    """The Compose specification's JSON Schema, as vendored in the pinned check-jsonschema."""
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(vendored.read_text())
    return schema


def variables(path: Path = COMPOSE_FILE) -> set[str]:
    """Every variable the file interpolates."""
    return {
        m.group("braced") or m.group("bare")
        for m in _TOKEN.finditer(path.read_text())
        if not m.group("escaped")
    }
