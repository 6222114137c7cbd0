"""``/healthz`` (the process answers), ``/readyz`` (Redis answers), ``/metrics``."""

from __future__ import annotations

import os

import redis
from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from custsync.http.answers import answer
from custsync.http.metrics import REGISTRY
from custsync.redis_errors import cause

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return answer(200, {"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    rt = current_app.config["CUSTSYNC_RUNTIME"]
    try:
        rt.redis.ping()
    except redis.RedisError as exc:
        return answer(503, {"status": "unready", "detail": f"Redis: {cause(exc)}"})
    return answer(200, {"status": "ready"})


@bp.get("/metrics")
def metrics() -> Response:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # several gunicorn workers: sum their files
        summed = CollectorRegistry()
        multiprocess.MultiProcessCollector(summed)  # type: ignore[no-untyped-call]
        return Response(generate_latest(summed), mimetype=CONTENT_TYPE_LATEST)
    return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)
