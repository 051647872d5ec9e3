"""Reading a routes file: YAML or JSON, ``${VAR}`` from the environment, errors that name the route."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from transforms.config import GatewayConfig

# Kong's entity checks quote the fields they concern ('auth.header_name'): no path prefix needed.
_NAMES_FIELDS = re.compile(r"'[a-z_]+\.[a-z_.]+'")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A config that cannot be used; the message lists every problem found, one per line."""


def load_config(path: str | Path, environ: Mapping[str, str]) -> GatewayConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    return parse_config(text, str(path), environ)


def parse_config(text: str, source: str, environ: Mapping[str, str]) -> GatewayConfig:
    try:
        if source.endswith(".json"):
            data = orjson.loads(text)
        else:
            data = YAML(typ="safe", pure=True).load(io.StringIO(text))
    except (orjson.JSONDecodeError, YAMLError) as e:
        raise ConfigError(f"{source} is not valid YAML/JSON: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with a 'routes' list")
    problems: list[str] = []
    data = _substitute(data, environ, (), problems, data)
    if problems:
        raise ConfigError("\n".join(problems))
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError("\n".join(_describe(err, data) for err in e.errors())) from None


# Top-level lists whose entries errors name: (key in the file, how an entry is called).
_ENTRY_LISTS = {"routes": "route", "gateway_keys": "gateway key"}
# Whole-config checks that already name their route or entry.
_NAMES_ENTRY = re.compile(r"^(route|gateway key) '")


def _route_label(data: Any, loc: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    if len(loc) >= 2 and loc[0] in _ENTRY_LISTS and isinstance(loc[1], int):
        entries = data.get(loc[0]) if isinstance(data, dict) else None
        name = None
        if isinstance(entries, list) and loc[1] < len(entries) and isinstance(entries[loc[1]], dict):
            name = entries[loc[1]].get("name")
        kind = _ENTRY_LISTS[loc[0]]
        label = f"{kind} '{name}'" if name else f"{kind} #{loc[1] + 1}"
        return label, loc[2:]
    return "config", loc


def _substitute(value: Any, environ: Mapping[str, str], loc: tuple[Any, ...], problems: list[str], root: Any):
    if isinstance(value, dict):
        return {k: _substitute(v, environ, (*loc, k), problems, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, environ, (*loc, i), problems, root) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def replace(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            label, rest = _route_label(root, loc)
            where = ".".join(str(p) for p in rest)
            problems.append(f"{label}: environment variable '{name}' is not set (used in {where})")
            return ""

        return _VAR.sub(replace, value)
    return value


def _describe(err: Mapping[str, Any], data: Any) -> str:
    label, rest = _route_label(data, tuple(err["loc"]))
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown field"
    # Errors of a whole object (Kong's entity checks) name their fields in the message already.
    rest = tuple(p for p in rest if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
    if label == "config" and not rest and _NAMES_ENTRY.match(message):
        return message
    if not rest or _NAMES_FIELDS.search(message):
        return f"{label}: {message}"
    return f"{label}: {'.'.join(str(p) for p in rest)}: {message}"
