"""Regular expressions for the prompt plugins: RE2 (linear time), compiled once at config load.

A client writes the text these patterns run on, so a backtracking engine would let one request
stall the proxy (``(a+)+$`` against ``aaaa...b``). RE2 cannot backtrack; the price is that it refuses
back-references and look-arounds, which the config load reports naming the route and the pattern.
"""

from __future__ import annotations

from typing import Any

import re2

_QUIET = re2.Options()
_QUIET.log_errors = False  # a refused pattern is reported by the config load, not on stderr


def compile_pattern(pattern: str, flags: str = "") -> Any:
    """The compiled pattern; ValueError naming it when RE2 cannot compile it. ``flags`` are inline
    RE2 flags (``im``: case-insensitive, multi-line)."""
    try:
        return re2.compile(f"(?{flags}){pattern}" if flags else pattern, _QUIET)
    except re2.error as e:
        reason = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(
            f"invalid regular expression {pattern!r}: {reason} (patterns are RE2: no back-references "
            "or look-arounds)"
        ) from None
