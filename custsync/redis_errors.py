"""Why Redis could not be reached, in one line an operator can act on.

redis-py raises ConnectionError or TimeoutError for every network failure; the socket or TLS
error underneath (its ``__context__``) says which: refused, timed out, unknown host, TLS.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import redis


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def cause(exc: BaseException, timeout_s: float | None = None) -> str:
    """What failed and what to check, without the URL (the caller names it, masked)."""
    chain = list(_chain(exc))
    if any(isinstance(e, redis.AuthenticationError) for e in chain) or any(
        isinstance(e, redis.ResponseError) and str(e).startswith(("NOAUTH", "WRONGPASS"))
        for e in chain
    ):
        return "authentication failed; check the user and password in the URL"
    if any(isinstance(e, ssl.SSLError) or "handshake" in str(e) for e in chain):
        return "TLS handshake failed; check rediss:// against the server's TLS port and its CA"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused; check the host and port, and that Redis is running"
    if any(isinstance(e, socket.gaierror) for e in chain):
        return "host name not found; check the host in the URL"
    if any(isinstance(e, TimeoutError | redis.TimeoutError | socket.timeout) for e in chain):
        after = f" after {timeout_s:g} s" if timeout_s else ""
        return (
            f"timed out{after}: the server accepts connections but does not answer; check that"
            " it is Redis and not overloaded (CUSTSYNC_REDIS_TIMEOUT_S sets the wait)"
        )
    return f"{type(exc).__name__}; check the URL and the network"
