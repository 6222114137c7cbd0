"""The worker's HTTP port (CUSTSYNC_METRICS_PORT): /metrics, /healthz, /readyz; else 404.

The standard library's threaded server in a daemon thread (prometheus-client's own serves
/metrics only). A probe answers 200 ``{"status": "ok"}``, or 503 ``{"status": "failing",
"failed": {part: why}}``; the checks themselves live in custsync.observability.probes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

Check = Callable[[], dict[str, str]]  # what failed, by part; empty when all is well

log = logging.getLogger("custsync.observability")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], registry: CollectorRegistry, checks: dict[str, Check]
    ) -> None:
        super().__init__(address, _Handler)
        self.registry = registry
        self.checks = checks

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The standard library prints the traceback to stderr: a record keeps it one line.
        log.exception("endpoints: a request failed")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, content_type, encoder(self.server.registry))
        elif path in self.server.checks:
            failed = _run(self.server.checks[path])
            body = {"status": "failing", "failed": failed} if failed else {"status": "ok"}
            self._send(503 if failed else 200, "application/json", json.dumps(body).encode())
        else:
            self._send(404, "application/json", b'{"error":"not found"}')

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a probe every few seconds: no access lines (the stdlib's go to stderr)


def _run(check: Check) -> dict[str, str]:
    try:
        return check()
    except Exception as exc:  # a check that cannot decide says so: failing, not silent
        log.exception("endpoints: a health check failed")
        return {"check": f"the check itself failed: {type(exc).__name__}"}


def serve(
    port: int,
    registry: CollectorRegistry,
    *,
    liveness: Check | None = None,
    readiness: Check | None = None,
    addr: str = "0.0.0.0",
) -> ThreadingHTTPServer:
    """Answer on ``port`` from a daemon thread; raises OSError when the port is taken.
    Without a check, its path is a 404."""
    checks = {
        path: check
        for path, check in (("/healthz", liveness), ("/readyz", readiness))
        if check is not None
    }
    server = _Server((addr, port), registry, checks)
    thread = threading.Thread(target=server.serve_forever, name="custsync-endpoints", daemon=True)
    thread.start()
    return server
