"""A fast yes/no check generated once from our JSON schemas.

jsonschema is the reference (and writes the error messages), but walking a schema per request costs
tens to hundreds of microseconds. The schemas under ``transforms/schemas`` use a small set of
keywords; this module turns exactly that set into plain Python functions (generated source, compiled
once at load) and refuses any other keyword, so the two can never silently disagree
(tests/test_validation.py checks them against each other on generated inputs).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

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
_NUMBER = "(isinstance(v, (int, float)) and not isinstance(v, bool))"
_TYPE_TESTS = {
    "object": "isinstance(v, dict)",
    "array": "isinstance(v, list)",
    "string": "isinstance(v, str)",
    "boolean": "(v is True or v is False)",
    "null": "v is None",
    "number": _NUMBER,
    # JSON Schema counts 1.0 as an integer.
    "integer": "((isinstance(v, int) and not isinstance(v, bool))"
    " or (isinstance(v, float) and v.is_integer()))",
}


_VARIABLE = re.compile(r"\bv\b")  # the checked value in generated tests (constants are K<n>)
_IN_PLACE = 4  # properties of an object tested in place, before a lookup of the rest


class _Generator:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.source: list[str] = []
        self.names: dict[str, Any] = {}
        self.count = 0
        self.property_tables: list[str] = []
        # Functions whose whole body is one test of ``v``: that test, to write in place of a call.
        self.inline: dict[str, str] = {}

    def constant(self, value: Any) -> str:
        name = f"K{len(self.names)}"
        self.names[name] = value
        return name

    def function(self, node: dict[str, Any]) -> str:
        unknown = set(node) - _SUPPORTED
        if unknown:
            raise ValueError(f"schema keyword(s) not supported by the fast check: {sorted(unknown)}")
        if set(node) - _ANNOTATIONS == {"$ref"}:
            target = self._ref(node["$ref"])
            if target is not None:  # None: a definition that refers to itself, still being generated
                return target  # the definition's own function, not a wrapper calling it
        name = f"check_{self.count}"
        self.count += 1
        body = self._body(node)
        if len(body) == 1 and body[0].startswith("if not (") and body[0].endswith("): return False"):
            self.inline[name] = body[0][len("if not ") : -len(": return False")]
        lines = "".join(f"    {line}\n" for line in body)
        self.source.append(f"def {name}(v):\n{lines}    return True\n")
        return name

    def _body(self, node: dict[str, Any]) -> list[str]:
        lines: list[str] = []
        # After a type test that admits objects only, the object keywords need not test it again.
        is_dict = "" if node.get("type") == "object" else "isinstance(v, dict) and "
        if "type" in node:
            names = node["type"] if isinstance(node["type"], list) else [node["type"]]
            lines.append(f"if not ({' or '.join(_TYPE_TESTS[n] for n in names)}): return False")
        if "enum" in node:
            values = node["enum"]
            if not all(v is None or isinstance(v, str) for v in values):
                raise ValueError("only string/null enums are supported")
            strings = self.constant(frozenset(v for v in values if isinstance(v, str)))
            null = " or v is None" if None in values else ""
            lines.append(f"if not ((isinstance(v, str) and v in {strings}){null}): return False")
        if "const" in node:
            if not isinstance(node["const"], str):
                raise ValueError("only string consts are supported")
            lines.append(f"if not (isinstance(v, str) and v == {self.constant(node['const'])}): return False")
        if "minimum" in node:
            lines.append(f"if {_NUMBER} and v < {self.constant(node['minimum'])}: return False")
        if "maximum" in node:
            lines.append(f"if {_NUMBER} and v > {self.constant(node['maximum'])}: return False")
        if "minItems" in node:
            lines.append(f"if isinstance(v, list) and len(v) < {node['minItems']:d}: return False")
        if "minLength" in node:
            lines.append(f"if isinstance(v, str) and len(v) < {node['minLength']:d}: return False")
        if "required" in node:
            required = node["required"]
            if len(required) == 1:
                lines.append(f"if {is_dict}{self.constant(required[0])} not in v: return False")
            elif required:
                lines.append(
                    f"if {is_dict}not v.keys() >= {self.constant(frozenset(required))}: return False"
                )
        if "properties" in node:
            functions = {k: self.function(sub) for k, sub in node["properties"].items()}
            props = self.constant(functions)
            self.property_tables.append(props)
            # Loop over the value's few keys, not the schema's many properties. The first properties
            # whose check is one test are tested in place (a call costs more than most tests).
            tested = [(k, self.inline[f]) for k, f in functions.items() if f in self.inline][:_IN_PLACE]
            loop = ["for k, x in v.items():"]
            for i, (key, test) in enumerate(tested):
                loop.append(f"    {'elif' if i else 'if'} k == {key!r}:")  # a literal: faster than a global
                loop.append(f"        if not {_VARIABLE.sub('x', test)}: return False")
            other = [f"f = {props}.get(k)", "if f is not None and not f(x): return False"]
            indent = "        " if tested else "    "
            loop += (["    else:"] if tested else []) + [indent + line for line in other]
            lines += loop if not is_dict else ["if isinstance(v, dict):", *(f"    {line}" for line in loop)]
        if "items" in node:
            item = self.function(node["items"])
            lines += [
                "if isinstance(v, list):",
                "    for x in v:",
                f"        if not {self._call(item, 'x')}: return False",
            ]
        if "anyOf" in node:
            options = [self._call(self.function(sub), "v") for sub in node["anyOf"]]
            lines.append(f"if not ({' or '.join(options)}): return False")
        if "$ref" in node:
            lines.append(f"if not {self._ref(node['$ref'])}(v): return False")
        return lines

    def _call(self, function: str, value: str) -> str:
        """A check of ``value``: the function's one test written in place (a call costs more than
        most tests), or a call."""
        test = self.inline.get(function)
        if test is None:
            return f"{function}({value})"
        return test if value == "v" else _VARIABLE.sub(value, test)

    def _ref(self, target: str) -> str:
        prefix = "#/$defs/"
        if not target.startswith(prefix):
            raise ValueError(f"unsupported $ref {target!r}")
        name = target[len(prefix) :]
        if name not in self.root.get("$defs", {}):
            raise ValueError(f"unknown $ref {target!r}")
        key = f"def:{name}"
        if key not in self.names:
            self.names[key] = None  # placeholder first: a definition may refer to itself
            self.names[key] = self.function(self.root["$defs"][name])
        return self.names[key]


def compile_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Check:
    """Compile a root schema (with ``$defs``) into one check function; or one of its subschemas,
    given the ``root`` its ``$ref``s point into."""
    gen = _Generator(root if root is not None else schema)
    entry = gen.function(schema)
    namespace: dict[str, Any] = {k: v for k, v in gen.names.items() if not k.startswith("def:")}
    exec(compile("\n".join(gen.source), "<schema_check>", "exec"), namespace)  # our own generated code
    # Property tables hold function names (a function may be defined after the table that names it);
    # resolve them to the functions once.
    for table in gen.property_tables:
        namespace[table] = {key: namespace[name] for key, name in namespace[table].items()}
    return namespace[entry]
