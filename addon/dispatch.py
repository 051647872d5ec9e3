"""Per-flow hooks that cost nothing where they have nothing to do.

mitmproxy calls every hook an addon defines for every flow (a call and its argument list, about a
microsecond each, whatever the hook then does), and skips a hook attribute that is None. An addon
whose per-flow hooks have no work under the current options, routes or flows in flight switches them
off, and back on when they have: ``switch_hooks(self, ("request",), on=...)``.
"""

from __future__ import annotations

from collections.abc import Iterable


def switch_hooks(addon: object, hooks: Iterable[str], on: bool) -> None:
    for name in hooks:
        if on:
            vars(addon).pop(name, None)  # the class's method is seen again
        else:
            setattr(addon, name, None)  # shadows it: mitmproxy skips a hook that is None


def hooks_on(addon: object, hook: str) -> bool:
    """Whether mitmproxy would call ``hook`` of ``addon``."""
    return getattr(addon, hook, None) is not None
