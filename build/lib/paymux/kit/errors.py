"""The error tree of the API: every error carries its HTTP status and machine-readable code.

Rendered as ``{"error": {"type", "code", "message", "param"}}``. Expected business conflicts are
4xx, never 500.
"""

from __future__ import annotations

from typing import Any


class PaymuxError(Exception):
    status_code = 400
    type = "invalid_request_error"

    def __init__(self, code: str, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "type": self.type,
                "code": self.code,
                "message": self.message,
                "param": self.param,
            }
        }


class InvalidRequest(PaymuxError):
    status_code = 400


class AuthenticationError(PaymuxError):
    status_code = 401
    type = "authentication_error"


class PermissionDenied(PaymuxError):
    status_code = 403
    type = "permission_error"


class NotFound(PaymuxError):
    status_code = 404
    type = "invalid_request_error"

    def __init__(self, what: str, ident: str) -> None:
        super().__init__("resource_missing", f"No such {what}: {ident!r}", param="id")


class Conflict(PaymuxError):
    status_code = 409
    type = "invalid_request_error"


class IdempotencyError(PaymuxError):
    status_code = 409
    type = "idempotency_error"


class ChannelUnavailable(PaymuxError):
    """No channel could take the request (none configured, or all failed technically)."""

    status_code = 402
    type = "channel_error"


class InternalError(PaymuxError):
    status_code = 500
    type = "api_error"


class UpstreamError(PaymuxError):
    """A channel could not be reached or answered ambiguously; retrying later may succeed."""

    status_code = 503
    type = "channel_error"
