"""The console's session: a signed cookie (its key shared by every replica through Redis),
login against the operators file, and a CSRF token checked on every form."""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask, Request, abort, current_app, redirect, request, session, url_for
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from custsync.http.operators import Operator, check_password
from custsync.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])


def shared_secret(rt: Runtime) -> str:
    """The session signing key: made once, kept in Redis, the same for every replica."""
    key = rt.keys.console_secret
    rt.redis.set(key, secrets.token_urlsafe(48), nx=True)
    return str(rt.redis.get(key))


class ConsoleSessions(SecureCookieSessionInterface):
    """Signed-cookie sessions whose key comes from Redis on the console's first request (not
    at start: /healthz must not need Redis), before Flask opens that request's session."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not app.secret_key and request.path.startswith("/console/"):
            app.secret_key = shared_secret(self.rt)
        return super().open_session(app, request)


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def check_csrf() -> None:
    sent = request.form.get("csrf", "")
    if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
        abort(403, "the form's CSRF token is missing or stale: reload the page")


def log_in(name: str, password: str) -> Operator | None:
    path = current_app.config["CUSTSYNC_SETTINGS"].operators_file
    who = check_password(Path(path), name, password) if path else None
    if who is not None:
        session.clear()
        session["who"], session["role"] = who.name, who.role
        csrf_token()
    return who


def current() -> Operator | None:
    if "who" not in session:
        return None
    return Operator(str(session["who"]), str(session["role"]))


def signed_in(role: str = "viewer") -> Callable[[F], F]:
    """Pages for the signed-in; forms (POST) also need the CSRF token and, to act, the role."""

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            who = current()
            if who is None:
                return redirect(url_for("console.login", next=request.path))
            if request.method == "POST":
                check_csrf()
            if role == "operator" and not who.may_act:
                abort(403, f"{who.name} is a viewer: reading only")
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return wrap
