"""One exception tree, split by what the caller must do (STYLE §2).

The pipeline decides retry versus dead-letter by the class alone.
"""

from __future__ import annotations

from typing import Any


class CustsyncError(Exception):
    """Root of every error custsync raises on purpose."""


class UsageError(CustsyncError):
    """A user mistake outside the event stream: a setting, a command, a file."""


class SettingsError(UsageError):
    """A configuration variable is missing or invalid; the message names it."""


class PermanentError(CustsyncError):
    """Retrying cannot help: the event goes to the DLQ with ``reason``."""

    reason = "rejected"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        response_body: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.response_body = response_body
        self.details = details


class InvalidEvent(PermanentError):
    """The envelope or its changes failed validation; no call was made."""

    reason = "invalid"


class Rejected(PermanentError):
    """The partner understood the request and refused it (4xx, success:false)."""

    reason = "rejected"


class NotFound(PermanentError):
    """The partner does not know the customer (404)."""

    reason = "not_found"


class TransientError(CustsyncError):
    """The partner or the network is down; retry with backoff."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        response_body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.response_body = response_body


class PartnerUnavailable(TransientError):
    """Connection error, timeout or 5xx: target-wide, counts toward the breaker."""


class Throttled(TransientError):
    """429: wait for Retry-After without using an attempt."""

    def __init__(self, message: str, *, retry_after_s: float, status: int = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s


class AuthFailed(TransientError):
    """401 after re-authentication, or 403: the target is misconfigured.

    Retried until the event's age budget is spent, then dead-lettered as ``auth``.
    """
