"""gunicorn running the app: gthread workers, graceful reload (HUP, which also reads the
settings again) and shutdown (TERM) as gunicorn does them, JSON access lines with the path
only (no query string, no body)."""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from custsync.dlq.jobs import JobRunner
from custsync.errors import SettingsError
from custsync.http.app import create_app
from custsync.http.sources import parse_sources
from custsync.logs import JsonFormatter, uses_json
from custsync.observability.scrub import ScrubFilter
from custsync.runtime import Runtime, set_runtime
from custsync.settings import load_settings

log = logging.getLogger("custsync.http")


class ServerLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger: access lines as JSON with the path only; its own lines (boot,
    signals, worker exits) in custsync's format and scrubbed, like every other record."""

    errors_as_json = False  # CUSTSYNC_LOG_FORMAT, set by Server before gunicorn starts

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if self.errors_as_json:
            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())
                handler.addFilter(ScrubFilter())

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if not self.cfg.accesslog:
            return
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "level": "info",
            "logger": "custsync.http.access",
            "method": req.method,
            "path": req.path,  # never the query string: it may carry anything
            "status": int(str(resp.status).split()[0]),
            "duration_ms": round(request_time.total_seconds() * 1000, 2),
            "bytes": getattr(resp, "sent", None),
        }
        self.access_log.info(json.dumps(line, separators=(",", ":")))


def is_loopback(bind: str) -> bool:
    host = bind.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, rt: Runtime, bind: str, workers: int, threads: int) -> None:
        self.rt = rt
        self.bind = bind
        ServerLogger.errors_as_json = uses_json(rt.settings.log_format)
        self.options: dict[str, Any] = {
            "bind": bind,
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "accesslog": "-",
            "errorlog": "-",
            "logger_class": ServerLogger,
            "graceful_timeout": 30,
            "timeout": 60,
            "keepalive": 5,
            "limit_request_line": 8190,  # gunicorn's most: DLQ filters ride in the query string
            "worker_exit": _stop_runner,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def reload(self) -> None:
        """gunicorn's HUP, in the master before it starts new workers: read the settings
        again (a secret rotated in CUSTSYNC_INGEST_SOURCES_FILE, a Secret remounted), so the
        new workers take them. A bad setting is one line and the running ones stay."""
        try:
            fresh = Runtime(load_settings())
            parse_sources(fresh.settings.ingest_sources)
            check_exposure(fresh, self.bind)
        except SettingsError as exc:
            log.error("reload: settings kept as they were: %s", exc)
        except Exception as exc:  # a reload must never take the master down; values unshown
            log.error("reload: settings kept as they were: %s", type(exc).__name__)
        else:
            self.rt = fresh
            set_runtime(fresh)
            log.info("reload: settings read again; new workers use them")
        super().reload()

    def load(self) -> Any:
        """In each gunicorn worker, after the fork: the app and its replay-job runner."""
        local = is_loopback(self.bind)
        app = create_app(self.rt, open_without_sources=local, secure_cookies=not local)
        global _runner
        _runner = JobRunner(self.rt, app.config["CUSTSYNC_PRODUCER"]).start()
        return app


_runner: JobRunner | None = None


def _stop_runner(server: Any, worker: Any) -> None:
    """A worker that exits hands its running replay job back, for another to resume now."""
    if _runner is not None:
        _runner.stop()


def check_exposure(rt: Runtime, bind: str) -> None:
    """No source configured: only a loopback bind may take unauthenticated events."""
    if not rt.settings.ingest_sources and not is_loopback(bind):
        raise SettingsError(
            f"CUSTSYNC_INGEST_SOURCES: no source is configured, so {bind} would take events"
            " from anyone; configure a source or bind to 127.0.0.1"
        )
