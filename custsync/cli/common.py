"""What every command shares: settings loading, one-line errors, exit codes."""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click
import redis

from custsync import exitcodes
from custsync.errors import SettingsError, UsageError
from custsync.redis_errors import cause
from custsync.words import plural

__all__ = [
    "echo_json",
    "fail",
    "handle_errors",
    "operator_name",
    "plural",
    "redis_failure",
    "runtime",
]
from custsync.runtime import Runtime, get_runtime

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"custsync: {message}", err=True)
    sys.exit(code)


def runtime() -> Runtime:
    """The runtime from the environment; a bad setting is one line, exit 3."""
    try:
        return get_runtime()
    except SettingsError as exc:
        fail(f"configuration error: {exc}", exitcodes.CONFIG_ERROR)


def redis_failure(exc: BaseException) -> str:
    """``cannot reach Redis at URL: what failed; what to check`` (password masked)."""
    from custsync.embedded.server import mask_url

    url, timeout_s = "?", None
    with contextlib.suppress(Exception):  # the URL itself may be what failed
        rt = get_runtime()
        url, timeout_s = mask_url(rt.redis_url), rt.settings.redis_timeout_s
    return f"cannot reach Redis at {url}: {cause(exc, timeout_s)}"


def handle_errors(func: F) -> F:
    """Turn user errors and unreachable services into one line and a named exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SettingsError as exc:
            fail(f"configuration error: {exc}", exitcodes.CONFIG_ERROR)
        except UsageError as exc:
            fail(str(exc), exitcodes.FAILURE)
        except redis.RedisError as exc:
            fail(redis_failure(exc), exitcodes.UNAVAILABLE)
        except KeyboardInterrupt:
            fail("interrupted", exitcodes.INTERRUPTED)

    return wrapper  # type: ignore[return-value]


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, default=str, separators=(",", ":")))


def operator_name() -> str:
    """Who acts, for the audit: the CLI user's login."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"
