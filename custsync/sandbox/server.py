"""The sandbox HTTP server: partner routes, the ``/_sandbox/`` control API, :class:`Sandbox`."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote

from custsync.sandbox import minted, vendor
from custsync.sandbox.faults import FaultError, Faults, Reply
from custsync.sandbox.store import RECORDED_HEADERS, Call, Store

DEFAULT_MINTED_CREDENTIALS = ("custsync", "minted-sandbox-secret")
DEFAULT_VENDOR_CREDENTIALS = ("custsync", "vendor-sandbox-secret")
_HEADER_NAMES = (*RECORDED_HEADERS, "authorization")
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on with timeout 0: close() sends a reset


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], app: Sandbox) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a killed worker, a timeout) is normal here, not an error.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # without it every keep-alive answer waits ~40 ms
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.app.verbose:
            super().log_message(format, *args)

    def _dispatch(self) -> None:
        app = self.server.app
        try:
            # One pass: Message.get() rescans every header on each call.
            headers = {name.lower(): value for name, value in self.headers.items()}
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self.close_connection = True
                self._send(Reply(411, {"message": "send a Content-Length"}))
                return
            length = int(headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            path, _, query = self.path.partition("?")
            parts = [unquote(p) for p in path.split("/")[1:]]
            head = parts[0] if parts else ""
            if head == "_sandbox":
                reply = control(app, self.command, parts[1:], query, raw)
            elif head == "partner":
                reply = self._partner(app.minted, minted.TARGET, parts, headers, raw)
            elif head == "vendor":
                reply = self._partner(app.vendor, vendor.TARGET, parts, headers, raw)
            else:
                reply = Reply(404, {"message": "no such route"})
        except Exception as exc:  # one bad request must not kill the connection thread
            sys.stderr.write(f"sandbox error on {self.command} {self.path}: {exc!r}\n")
            reply = Reply(500, {"message": f"sandbox error: {type(exc).__name__}"})
        self._send(reply)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _partner(
        self,
        api: minted.MintedApi | vendor.VendorApi,
        target: str,
        parts: list[str],
        headers: dict[str, str],
        raw: bytes,
    ) -> Reply:
        route, customer_id = api.route(parts)
        try:
            body, json_ok = (json.loads(raw), True) if raw else (None, False)
        except ValueError:
            body, json_ok = None, False
        kept = {name: headers.get(name) for name in _HEADER_NAMES}
        call = Call(target, self.command, self.path, route, customer_id, kept, body, json_ok)
        reply = api.handle(call)
        self.server.app.store.finish(call, reply)
        return reply

    def _send(self, reply: Reply) -> None:
        if self.server.app.verbose:
            sys.stderr.write(f"{self.command} {self.path} -> {reply.status or 'reset'}\n")
        if reply.reset:
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
            return
        body = b"" if reply.body is None else json.dumps(reply.body).encode()
        phrase = self.responses.get(reply.status, ("",))[0]
        lines = [f"HTTP/1.1 {reply.status} {phrase}", f"Content-Length: {len(body)}"]
        if body:
            lines.append("Content-Type: application/json")
        if reply.headers:
            lines.extend(f"{k}: {v}" for k, v in reply.headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        lines.append("\r\n")
        try:
            self.wfile.write("\r\n".join(lines).encode("latin-1") + body)
        except OSError:  # the client gave up (e.g. its timeout during a delay)
            self.close_connection = True


class Sandbox:
    """Both partner APIs on one local HTTP server, with a control API for tests."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        minted_credentials: tuple[str, str] = DEFAULT_MINTED_CREDENTIALS,
        vendor_credentials: tuple[str, str] = DEFAULT_VENDOR_CREDENTIALS,
        token_ttl_s: float = 3600.0,
        seed: bool = True,
        faults: Mapping[str, Mapping[str, Any]] | None = None,
        nonce_lifetime_s: float = 300.0,
        record_limit: int = 100_000,
        verbose: bool = False,
    ) -> None:
        self.host = host
        self.minted_credentials = minted_credentials
        self.vendor_credentials = vendor_credentials
        self.verbose = verbose
        self._port = port
        self.store = Store(
            {minted.TARGET: minted.SEED, vendor.TARGET: vendor.SEED} if seed else {}, record_limit
        )
        self.faults = Faults()
        self.minted = minted.MintedApi(
            self.store, self.faults, minted_credentials, nonce_lifetime_s
        )
        self.vendor = vendor.VendorApi(self.store, self.faults, vendor_credentials, token_ttl_s)
        for target, values in (faults or {}).items():
            if target not in (minted.TARGET, vendor.TARGET):
                raise ValueError(f"unknown fault target {target!r} (minted, vendor)")
            self.faults.configure(target, values)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1] if self._httpd else self._port

    @property
    def url(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The CUSTSYNC_* settings that point custsync at this sandbox."""
        return {
            "CUSTSYNC_MINTED_BASE_URL": self.url,
            "CUSTSYNC_MINTED_USERNAME": self.minted_credentials[0],
            "CUSTSYNC_MINTED_PASSWORD": self.minted_credentials[1],
            "CUSTSYNC_VENDOR_BASE_URL": self.url,
            "CUSTSYNC_VENDOR_USERNAME": self.vendor_credentials[0],
            "CUSTSYNC_VENDOR_PASSWORD": self.vendor_credentials[1],
        }

    def listen(self) -> Sandbox:
        """Bind the socket (idempotent); ``url`` is final afterwards."""
        if self._httpd is None:
            self._httpd = _Server((self.host, self._port), self)
        return self

    def start(self) -> Sandbox:
        """Serve in a daemon thread; returns once the socket listens."""
        httpd = self.listen()._httpd
        assert httpd is not None
        if self._thread is None:
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.2},
                name="custsync-sandbox",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` or KeyboardInterrupt."""
        httpd = self.listen()._httpd
        assert httpd is not None
        httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        if self._thread is not None:
            httpd.shutdown()
            self._thread.join()
            self._thread = None
        httpd.server_close()
        with httpd.connections_lock:  # keep-alive clients must not reach a stopped sandbox
            for conn in list(httpd.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Seeded customers, no records, no faults, no scripts, default payment sets."""
        self.store.reset()
        self.faults.reset()
        self.vendor.reset()


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json_object(raw: bytes, key: str | None = None) -> Any:
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        raise _BadRequest(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest(400, "body must be a JSON object")
    if key is None:
        return body
    if key not in body:
        raise _BadRequest(400, f"body needs {key!r}")
    return body[key]


def _target(name: str) -> str:
    if name not in (minted.TARGET, vendor.TARGET):
        raise _BadRequest(404, f"unknown target {name!r} (minted, vendor)")
    return name


def _customers(target: str, records: Any) -> dict[str, dict[str, Any]]:
    id_field = minted.ID_FIELD if target == minted.TARGET else vendor.ID_FIELD
    if not isinstance(records, dict) or not all(isinstance(r, dict) for r in records.values()):
        raise _BadRequest(400, "customers must be an object of id -> record objects")
    return {cid: {**record, id_field: cid} for cid, record in records.items()}


def _requests(app: Sandbox, query: str) -> dict[str, Any]:
    q = {k: v[-1] for k, v in parse_qs(query).items()}
    try:
        since = int(q.get("since_seq", "0"))
    except ValueError:
        raise _BadRequest(400, "since_seq must be an integer") from None
    found = app.store.requests(q.get("target"), q.get("key"), q.get("customer_id"), since)
    return {"requests": found}


def control(app: Sandbox, method: str, parts: list[str], query: str, raw: bytes) -> Reply:
    """The ``/_sandbox/`` API; ``parts`` are the path segments after it."""
    try:
        return Reply(200, _control(app, method, parts, query, raw))
    except (_BadRequest, FaultError) as exc:
        return Reply(getattr(exc, "status", 400), {"error": str(exc)})


def _control(app: Sandbox, method: str, parts: list[str], query: str, raw: bytes) -> Any:
    match method, parts:
        case "GET", ["health"]:
            return {"ok": True, "targets": [minted.TARGET, vendor.TARGET]}
        case "POST", ["reset"]:
            app.reset()
            return {"ok": True}
        case "PUT", ["customers", target, cid]:
            records = _customers(_target(target), {cid: _json_object(raw)})
            app.store.put(target, records)
            return records[cid]
        case "POST", ["customers", target]:
            records = _customers(_target(target), _json_object(raw, "customers"))
            app.store.put(target, records)
            return {"ok": True, "count": len(records)}
        case "GET", ["customers", target, cid]:
            record = app.store.get(_target(target), cid)
            if record is None:
                raise _BadRequest(404, f"no {target} customer {cid!r}")
            return record
        case "GET", ["customers", target]:
            return {"customers": app.store.all(_target(target))}
        case "GET", ["faults", target]:
            return app.faults.snapshot(_target(target))
        case "POST", ["faults", target]:
            return app.faults.configure(_target(target), _json_object(raw))
        case "DELETE", ["faults", target]:
            return app.faults.clear(_target(target))
        case "POST", ["script", target, cid]:
            items = _json_object(raw, "responses")
            if not isinstance(items, list):
                raise _BadRequest(400, "responses must be a list")
            return {"pending": app.faults.add_script(_target(target), cid, items)}
        case "GET", ["script", target, cid]:
            return {"pending": app.faults.pending(_target(target), cid)}
        case "POST", ["vendor", "expire-tokens"]:
            return {"expired": app.vendor.expire_tokens()}
        case "POST", ["vendor", "payment-sets"]:
            ids = _json_object(raw, "ids")
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise _BadRequest(400, "ids must be a list of strings")
            return {"payment_sets": sorted(app.vendor.add_payment_sets(ids))}
        case "GET", ["requests"]:
            return _requests(app, query)
        case "GET", ["stats"]:
            return app.store.stats()
    raise _BadRequest(404, f"no control route {method} /_sandbox/{'/'.join(parts)}")
