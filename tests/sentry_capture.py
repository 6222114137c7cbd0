"""A stand-in Sentry ingest endpoint: records every envelope the real SDK transport POSTs."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Envelope:
    raw: bytes  # decompressed, exactly as the SDK sent it
    items: list[tuple[dict[str, Any], bytes]] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for head, body in self.items if head.get("type") == "event"]


def parse_envelope(raw: bytes) -> Envelope:
    """Sentry's envelope format: a header line, then (item header line, payload) pairs."""
    env = Envelope(raw)
    _, _, rest = raw.partition(b"\n")
    while rest.strip():
        head_line, _, rest = rest.partition(b"\n")
        head = json.loads(head_line)
        length = head.get("length")
        if length is None:
            body, _, rest = rest.partition(b"\n")
        else:
            body, rest = rest[:length], rest[length + 1 :]
        env.items.append((head, body))
    return env


class _Handler(BaseHTTPRequestHandler):
    server: SentryCapture._Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        self.server.capture.add(parse_envelope(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class SentryCapture:
    class _Server(ThreadingHTTPServer):
        daemon_threads = True
        capture: SentryCapture

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.envelopes: list[Envelope] = []
        self._server = self._Server(("127.0.0.1", 0), _Handler)
        self._server.capture = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self._server.server_address[1]}/1"

    def add(self, envelope: Envelope) -> None:
        with self._lock:
            self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e for env in self.envelopes for e in env.events()]

    def raw(self) -> bytes:
        with self._lock:
            return b"\n".join(env.raw for env in self.envelopes)

    def __enter__(self) -> SentryCapture:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
