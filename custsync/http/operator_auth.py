"""Authentication and roles for the operator API: HTTP Basic (a user of the operators file)
or ``Authorization: Bearer`` (one of its API keys). ``viewer`` reads; ``operator`` acts."""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from flask import current_app, g, request

from custsync.http.answers import problem
from custsync.http.operators import Operator, check_api_key, check_password

F = TypeVar("F", bound=Callable[..., Any])


def _operator() -> Operator | None:
    path = current_app.config["CUSTSYNC_SETTINGS"].operators_file
    if not path:
        return None
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value:
        return check_api_key(Path(path), value.strip())
    if scheme.lower() == "basic" and value:
        try:
            name, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return check_password(Path(path), name, password)
    return None


def requires(role: str) -> Callable[[F], F]:
    """401 without valid credentials; 403 when a viewer tries what needs an operator."""

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            who = _operator()
            if who is None:
                refused = problem(401, "unauthorized", "log in as an operator or send an API key")
                refused.headers["WWW-Authenticate"] = 'Basic realm="custsync"'
                return refused
            if role == "operator" and not who.may_act:
                return problem(403, "forbidden", f"{who.name} is a viewer: reading only")
            g.operator = who
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return wrap
