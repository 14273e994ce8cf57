"""The one exception endpoints raise for a non-2xx answer, and the error body Extend uses."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response

from extendq.emulator.wire import JSON_TYPE, dumps, new_id

_RETRYABLE = frozenset({408, 409, 429, 500, 502, 503, 504})
_CODES = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}


class ApiProblem(Exception):
    """An answer other than 2xx, rendered as `{code, message, retryable, requestId}`."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "ERROR")
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def response(self) -> Response:
        """The HTTP response for this problem."""
        return error_response(self.status, self.message, code=self.code, headers=self.headers)


def bad_request(message: str) -> ApiProblem:
    """400 INVALID_REQUEST."""
    return ApiProblem(400, message)


def not_found(kind: str, ident: str) -> ApiProblem:
    """404 NOT_FOUND for an unknown workflow, run or file."""
    return ApiProblem(404, f"{kind} {ident!r} was not found")


def error_body(status: int, message: str, *, code: str | None = None) -> dict[str, object]:
    """The error object of the contract, with a fresh request id."""
    return {
        "code": code or _CODES.get(status, "ERROR"),
        "message": message,
        "retryable": status in _RETRYABLE,
        "requestId": new_id("req_", 12),
    }


def error_response(
    status: int, message: str, *, code: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON error response with the contract's error body."""
    body = dumps(error_body(status, message, code=code))
    return Response(body, status_code=status, headers=dict(headers or {}), media_type=JSON_TYPE)
