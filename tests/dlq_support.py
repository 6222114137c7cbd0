"""Helpers for the DLQ and status tests: the CLI as operators run it, Redis snapshots, entries."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import Any

from custsync.dlq.entry import DeadLetter
from tests.events import MINTED_EXAMPLE, envelope

DLQ_DB = 2  # our worker's database: a replay by filter never touches other tests' entries
QUIET_DB = 12  # no worker ever runs here: what a command enqueues stays on the queue


def cli(
    env: dict[str, str], *args: str, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``custsync ARGS`` in a subprocess, stdin not a terminal (as in cron or CI)."""
    return subprocess.run(
        [sys.executable, "-m", "custsync.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout_s,
        check=False,
    )


def start_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "custsync.cli", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def snapshot(redis: Any, ignore: Iterable[str] = ()) -> dict[str, tuple[str, bytes, bool]]:
    """Every key's type, serialized value (DUMP) and whether it expires."""
    skip = set(ignore)
    state = {}
    for key in sorted(redis.scan_iter(count=1000)):
        name = key.decode() if isinstance(key, bytes) else key
        if name in skip:
            continue
        state[name] = (redis.type(key), redis.dump(key), redis.pttl(key) > 0)
    return state


def queued_raw(redis: Any) -> list[Any]:
    """Every message waiting on the Redis broker: the public queue, then each partner's."""
    from custsync.state.keys import all_queues
    from custsync.targets import REGISTRY

    return [raw for name in all_queues(REGISTRY) for raw in redis.lrange(name, 0, -1)]


def queued_count(redis: Any) -> int:
    """Events waiting on the broker (a batch message counts its events; garbage counts 1)."""
    from custsync.broker.reading import envelopes_in

    return sum(max(1, len(envelopes_in(raw))) for raw in queued_raw(redis))


def queued_event_ids(redis: Any) -> list[str]:
    """The event id of every event waiting on the Redis broker's queue lists (a batch
    message carries several)."""
    from custsync.broker.reading import envelopes_in

    return [env["event_id"] for raw in queued_raw(redis) for env in envelopes_in(raw)]


def entry(
    target: str = "minted",
    reason: str = "not_found",
    *,
    customer_id: str = "C-1",
    status: int | None = 404,
    age_s: float = 60.0,
    error: str = "minted answered 404: not found",
    changes: dict[str, Any] | None = None,
) -> DeadLetter:
    """A dead-letter record as the pipeline writes it, for tests that need no partner."""
    env = envelope(target, customer_id, changes if changes is not None else dict(MINTED_EXAMPLE))
    at = time.time() - age_s
    return DeadLetter(
        event_id=env["event_id"],
        target=target,
        customer_id=customer_id,
        reason=reason,
        error_class="NotFound" if reason == "not_found" else "Rejected",
        error=error,
        envelope=env,
        status=status,
        response='{"message":"no such customer"}',
        attempts=1,
        first_seen_at=at - 1,
        dead_lettered_at=at,
    )


class Quiet:
    """A flushed database with no worker: settings, a runtime, a raw client, a sending app."""

    def __init__(
        self, redis_server: Any, sandbox: Any, *, db: int = QUIET_DB, **overrides: str
    ) -> None:
        import redis

        from custsync.runtime import Runtime
        from custsync.settings import load_settings
        from tests.conftest import custsync_env, db_url

        self.url = db_url(redis_server, db)
        self.raw = redis.Redis.from_url(self.url)  # bytes in, bytes out: for DUMP and LRANGE
        self.raw.flushdb()
        self.env = custsync_env(redis_server, sandbox, db, **overrides)
        self.rt = Runtime(load_settings(self.env))

    @property
    def app(self) -> Any:
        from custsync.worker import producer_app

        return producer_app(self.rt)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cli(self.env, *args)

    def ids(self) -> set[str]:
        """The event ids in the DLQ (entries are keyed by their own entry ids)."""
        return {
            e.label for e in self.rt.dlq.load(self.rt.redis.zrange(self.rt.keys.dlq_all, 0, -1))
        }


def redis_contents(raw: Any) -> bytes:
    """Every key and value of one database (a client without decoding), as bytes; queued
    messages' base64 bodies decoded too. For erasure tests."""
    out: list[bytes] = []
    for key in raw.scan_iter(count=500):
        out.append(key)
        kind = raw.type(key).decode()
        if kind == "string":
            out.append(raw.get(key) or b"")
        elif kind == "hash":
            out += [b for pair in raw.hgetall(key).items() for b in pair]
        elif kind == "zset":
            out += raw.zrange(key, 0, -1)
        elif kind == "list":
            out += raw.lrange(key, 0, -1)
        elif kind == "set":
            out += list(raw.smembers(key))
        elif kind == "stream":
            out += [b for _, fields in raw.xrange(key) for pair in fields.items() for b in pair]
    blob = b"\n".join(out)
    decoded = []  # queued messages carry the envelope base64-encoded
    for chunk in blob.split(b'"'):
        try:
            decoded.append(base64.b64decode(chunk, validate=True))
        except ValueError:
            continue
    return blob + b"\n".join(decoded)
