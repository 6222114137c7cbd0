"""bulk publish: ``publish_many`` and ``custsync publish`` against raw pipelined LPUSH.

The limit is redis-py pipelined LPUSH of one ready-made single-event message per event (the
cost of just putting each event on a list), 1,000 per round trip; ``publish_many`` sends
``apply_batch`` messages of CUSTSYNC_BATCH_MAX events; a plain ``apply_async``
loop (no validation, one round trip per event) is the naive producer for comparison. The
CLI figure includes its interpreter start, as a user sees it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import redis

from bench.common import (
    ROOT,
    BenchError,
    Figure,
    Report,
    base_env,
    cpu_s,
    custsync_env,
    minted_events,
    redis_pid,
    start_redis,
)
from bench.profile import profiled
from custsync.state.keys import partner_queue

QUEUE = partner_queue("minted")  # every event these benchmarks send is Minted's
PUBLIC = "custsync"  # where apply_async (a plain Celery client) sends

SIZES = {True: (10_000, 2_000), False: (100_000, 20_000)}  # (publish_many and CLI, apply_async)
BATCH = 1000


def _timed(func: Any, procs: dict[str, psutil.Process]) -> tuple[float, dict[str, float]]:
    before = {n: cpu_s(p) for n, p in procs.items()}
    t0 = time.perf_counter()
    func()
    wall = time.perf_counter() - t0
    return wall, {n: cpu_s(p) - before[n] for n, p in procs.items()}


def _drain(client: redis.Redis, expected: int, queue: str = QUEUE) -> list[bytes]:
    """Read back what was queued (oldest first), check it holds ``expected`` events, and
    empty the queue."""
    from custsync.broker.reading import envelopes_in

    raw: list[bytes] = client.lrange(queue, 0, -1)  # type: ignore[assignment]
    client.delete(queue)
    events = sum(len(envelopes_in(r)) for r in raw)
    if events != expected:
        raise BenchError(f"queue held {events} events, expected {expected}")
    raw.reverse()
    return raw


def raw_lpush(client: redis.Redis, payloads: list[bytes]) -> None:
    pipe = client.pipeline(transaction=False)
    for i, payload in enumerate(payloads, start=1):
        pipe.lpush(QUEUE, payload)
        if i % BATCH == 0:
            pipe.execute()
    pipe.execute()


def run(workdir: Path, *, quick: bool) -> tuple[Report, str]:
    from custsync.broker.messages import MessageBuilder
    from custsync.celery_app import app as default_app
    from custsync.producer import check, publish_many
    from custsync.runtime import Runtime, set_runtime
    from custsync.settings import load_settings
    from custsync.tasks import apply_update

    n, n_async = SIZES[quick]
    report = Report("bulk_publish", quick, params={"events": n, "apply_async_events": n_async})
    with contextlib.ExitStack() as stack:
        server = start_redis(workdir, stack)
        client = redis.Redis.from_url(server.url)
        version = str(client.info("server")["redis_version"])
        env = custsync_env(server.url, "http://127.0.0.1:9")  # no partner is called here
        rt = Runtime(load_settings(env))
        set_runtime(rt)
        stack.callback(set_runtime, None)
        procs = {"bench": psutil.Process(), "redis": psutil.Process(redis_pid(client))}
        events = minted_events(n, "bulk")
        publish_many(events[:100])  # connections, scripts and imports warm
        client.delete(QUEUE)

        with profiled(psutil.Process().pid, "publish_many"):
            wall_many, cpu_many = _timed(lambda: publish_many(events), procs)
        messages = _drain(client, n)
        builder = MessageBuilder(default_app)
        payloads = [builder.build(e, None).encode() for e in events]

        # The inherent limit of publish_many: the same rules, checked and nothing sent.
        def check_all() -> None:
            for event in events:
                check(event, rt.settings)

        wall_check, _ = _timed(check_all, procs)
        wall_raw, cpu_raw = _timed(lambda: raw_lpush(client, payloads), procs)
        _drain(client, n)

        ndjson = workdir / "events.ndjson"
        ndjson.write_text("".join(json.dumps(e) + "\n" for e in events))
        cmd = [sys.executable, "-m", "custsync.cli", "publish", str(ndjson), "--json"]
        t0 = time.perf_counter()
        out = subprocess.run(
            cmd, env={**base_env(), **env}, cwd=ROOT, capture_output=True, timeout=900, check=False
        )
        wall_cli = time.perf_counter() - t0
        if out.returncode != 0:
            raise BenchError(f"custsync publish exited {out.returncode}: {out.stderr[-500:]!r}")
        _drain(client, n)

        subset = events[:n_async]
        wall_async, _ = _timed(lambda: [apply_update.apply_async(args=(e,)) for e in subset], procs)
        _drain(client, n_async, PUBLIC)  # a plain Celery call goes to the public queue

    raw_rate = n / wall_raw
    many_rate = n / wall_many
    report.add(Figure.of("publish_many", many_rate, "ev/s", raw_rate, "pipelined LPUSH", low=0.5))
    report.add(
        Figure.of(
            "publish_many vs validate-only loop",
            many_rate,
            "ev/s",
            n / wall_check,
            "check() loop",
            low=0.8,
        )
    )
    report.add(
        Figure.of(
            "validation µs/event", wall_check / n * 1e6, "µs", wall_many / n * 1e6, "publish_many"
        )
    )
    report.add(Figure.of("custsync publish (CLI)", n / wall_cli, "ev/s", raw_rate, "LPUSH"))
    report.add(Figure.of("apply_async loop", n_async / wall_async, "ev/s", raw_rate, "LPUSH"))
    report.add(
        Figure.of("publish_many vs apply_async", many_rate, "ev/s", n_async / wall_async, "loop")
    )
    report.add(
        Figure.of(
            "publish_many CPU µs/event",
            cpu_many["bench"] / n * 1e6,
            "µs",
            cpu_raw["bench"] / n * 1e6,
            "LPUSH client",
        )
    )
    report.add(
        Figure.of(
            "Redis CPU µs/event (publish_many)",
            cpu_many["redis"] / n * 1e6,
            "µs",
            cpu_raw["redis"] / n * 1e6,
            "LPUSH",
        )
    )
    report.details = {
        "wall_s": {
            "publish_many": wall_many,
            "raw": wall_raw,
            "cli": wall_cli,
            "validate_only": wall_check,
        },
        "cpu_s": {"publish_many": cpu_many, "raw": cpu_raw},
        "message_bytes": sum(len(p) for p in payloads) / n,
        "batch_message_bytes_per_event": sum(len(m) for m in messages) / n,
        "messages": len(messages),
    }
    return report, version
