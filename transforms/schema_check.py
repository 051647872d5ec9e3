"""A fast yes/no check compiled once from our JSON schemas.

jsonschema is the reference (and writes the error messages), but walking a schema per request costs
tens of microseconds. The schemas under ``transforms/schemas`` use a small set of keywords; this
module compiles exactly that set into nested closures and refuses any other keyword at load, so the
two can never silently disagree (tests/test_validation.py checks them against each other).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    # JSON Schema counts 1.0 as an integer.
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    ),
}
_ANNOTATIONS = {"$schema", "title", "description", "$defs"}
_SUPPORTED = {
    "type",
    "required",
    "properties",
    "items",
    "$ref",
    "anyOf",
    "enum",
    "const",
    "minimum",
    "maximum",
    "minItems",
    "minLength",
} | _ANNOTATIONS


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def compile_schema(schema: dict[str, Any]) -> Check:
    """Compile a root schema (with ``$defs``) into one check."""
    defs: dict[str, Check] = {}

    def ref(target: str) -> Check:
        prefix = "#/$defs/"
        if not target.startswith(prefix):
            raise ValueError(f"unsupported $ref {target!r}")
        name = target[len(prefix) :]
        if name not in schema.get("$defs", {}):
            raise ValueError(f"unknown $ref {target!r}")

        def check(v: Any) -> bool:
            if name not in defs:
                defs[name] = build(schema["$defs"][name])
            return defs[name](v)

        return check

    def build(node: dict[str, Any]) -> Check:
        unknown = set(node) - _SUPPORTED
        if unknown:
            raise ValueError(f"schema keyword(s) not supported by the fast check: {sorted(unknown)}")
        checks: list[Check] = []
        if "type" in node:
            names = node["type"] if isinstance(node["type"], list) else [node["type"]]
            type_checks = [_TYPES[n] for n in names]
            checks.append(lambda v, tc=type_checks: any(t(v) for t in tc))
        if "enum" in node:
            checks.append(_enum(node["enum"]))
        if "const" in node:
            const = node["const"]
            if not isinstance(const, str):
                raise ValueError("only string consts are supported")
            checks.append(lambda v, c=const: isinstance(v, str) and v == c)
        if "minimum" in node:
            checks.append(lambda v, m=node["minimum"]: not _is_number(v) or v >= m)
        if "maximum" in node:
            checks.append(lambda v, m=node["maximum"]: not _is_number(v) or v <= m)
        if "minItems" in node:
            checks.append(lambda v, m=node["minItems"]: not isinstance(v, list) or len(v) >= m)
        if "minLength" in node:
            checks.append(lambda v, m=node["minLength"]: not isinstance(v, str) or len(v) >= m)
        if "required" in node:
            required = tuple(node["required"])
            checks.append(lambda v, r=required: not isinstance(v, dict) or all(k in v for k in r))
        if "properties" in node:
            props = {k: build(sub) for k, sub in node["properties"].items()}
            checks.append(lambda v, p=props: not isinstance(v, dict) or _properties(v, p))
        if "items" in node:
            item = build(node["items"])
            checks.append(lambda v, i=item: not isinstance(v, list) or all(i(x) for x in v))
        if "anyOf" in node:
            options = [build(sub) for sub in node["anyOf"]]
            checks.append(lambda v, o=options: any(c(v) for c in o))
        if "$ref" in node:
            checks.append(ref(node["$ref"]))
        if len(checks) == 1:
            return checks[0]
        return lambda v, cs=tuple(checks): all(c(v) for c in cs)

    return build(schema)


def _properties(value: dict[str, Any], props: dict[str, Check]) -> bool:
    return all(check(value[key]) for key, check in props.items() if key in value)


def _enum(values: list[Any]) -> Check:
    if not all(v is None or isinstance(v, str) for v in values):
        raise ValueError("only string/null enums are supported")
    strings = frozenset(v for v in values if isinstance(v, str))
    allows_null = None in values
    return lambda v: (isinstance(v, str) and v in strings) or (allows_null and v is None)
