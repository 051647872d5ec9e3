"""Errors the gateway itself raises, and the OpenAI error shape every client receives."""

from __future__ import annotations

import orjson

# OpenAI's error "type" by HTTP status, so SDKs raise the matching exception class.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_type_for(status: int) -> str:
    if status in _TYPES:
        return _TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


class GatewayError(Exception):
    """A request the gateway answers itself with an OpenAI-shaped error."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        error_type: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.error_type = error_type or error_type_for(status)
        self.param = param  # the request field at fault, as OpenAI's errors name it

    def body(self) -> bytes:
        return error_body(self.message, self.error_type, self.code, self.param)


def body_too_large(limit: int, size: int | None = None) -> GatewayError:
    """A request body over the route's ``max_request_body_size`` (``size``: its length, when known)."""
    what = f"request body of {size} bytes" if size is not None else "request body"
    return GatewayError(413, f"{what} exceeds max_request_body_size ({limit})", "request_too_large")


def bad_request(message: str, code: str = "invalid_request") -> GatewayError:
    return GatewayError(400, message, code)


def error_body(message: str, error_type: str, code: str | None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": error_type, "param": param, "code": code}})
