"""The WSGI application: ingest, health, metrics and the OpenAPI document."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from custsync.celery_app import producer_app
from custsync.http import console, ingest, operator_api, replay_jobs_api
from custsync.http.answers import answer, problem
from custsync.http.console_session import ConsoleSessions
from custsync.http.health import bp as health_bp
from custsync.http.metrics import INGESTED, LATENCY, REQUESTS
from custsync.http.schemas import ProblemSchema
from custsync.http.sources import parse_sources
from custsync.runtime import Runtime
from custsync.version import VERSION

log = logging.getLogger("custsync.http")

# What an ingest answer means, as a metrics label (bounded: never an id or a value).
OUTCOMES = {
    202: "accepted",
    400: "malformed",
    401: "unauthorized",
    409: "in_progress",
    413: "too_large",
    415: "unsupported_type",
    422: "invalid",
    429: "rate_limited",
}


def create_app(
    rt: Runtime, *, open_without_sources: bool = False, secure_cookies: bool = True
) -> Flask:
    """``open_without_sources``: with no source configured, accept unauthenticated events
    (``custsync serve`` allows it only when bound to loopback). ``secure_cookies``: the
    console's session cookie only over HTTPS (off only on loopback)."""
    settings = rt.settings
    app = Flask(__name__, static_url_path="/console/static")
    app.config.update(
        SESSION_COOKIE_SECURE=secure_cookies,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_NAME="custsync_console",
        API_TITLE="custsync",
        API_VERSION=VERSION,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/v1",
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=settings.ingest_max_bytes,
        CUSTSYNC_RUNTIME=rt,
        CUSTSYNC_SETTINGS=settings,
        CUSTSYNC_SOURCES=parse_sources(settings.ingest_sources),
        CUSTSYNC_OPEN=open_without_sources,
        CUSTSYNC_PRODUCER=producer_app(rt),
    )
    app.session_interface = ConsoleSessions(rt)
    api = _Api(app)
    api.spec.components.security_scheme(
        "apiKey", {"type": "http", "scheme": "bearer", "description": "a source's API key"}
    )
    api.spec.components.security_scheme(
        "standardWebhooks",
        {
            "type": "apiKey",
            "in": "header",
            "name": "webhook-signature",
            "description": "Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature",
        },
    )
    api.register_blueprint(ingest.blp)
    api.register_blueprint(operator_api.blp)
    api.register_blueprint(replay_jobs_api.blp)
    app.register_blueprint(health_bp)
    app.register_blueprint(console.bp)
    app.before_request(_started)
    app.after_request(_observed)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    return app


class _Api(Api):  # type: ignore[misc]
    ERROR_SCHEMA = ProblemSchema  # every error answer, documented as it is sent


def _started() -> None:
    g.started = time.perf_counter()


def _observed(response: Response) -> Response:
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    REQUESTS.labels(route, str(response.status_code)).inc()
    if route == "/v1/events":
        outcome = OUTCOMES.get(response.status_code, "error")
        if response.headers.get("Idempotent-Replayed"):
            outcome = "repeated"
        INGESTED.labels(g.get("source", "-"), outcome).inc(g.get("events", 1))
    LATENCY.labels(route).observe(time.perf_counter() - g.get("started", time.perf_counter()))
    return response


def _http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    detail = {413: "the body is over CUSTSYNC_INGEST_MAX_BYTES"}.get(code, exc.description or "")
    if request.path.startswith("/console/"):  # a person in a browser: a page, not JSON
        return console.error_page(code, exc.name or "error", str(detail))
    messages = (getattr(exc, "data", None) or {}).get("messages")
    if messages:  # a request schema's field errors: names and rules, never the values
        body = {"error": "invalid request", "detail": "see errors", "errors": messages}
        return answer(code, body)
    return problem(code, (exc.name or "error").lower(), str(detail))


def _unexpected(exc: Exception) -> Any:
    log.exception("unexpected error answering %s %s", request.method, request.path)
    if request.path.startswith("/console/"):
        return console.error_page(500, "internal error", "see the server log")
    return problem(500, "internal error", "see the server log")
