"""Pure translation code: no mitmproxy import, no I/O, no mutable globals."""
