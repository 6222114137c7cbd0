"""Redis round trips per applied event, split into broker (kombu) and custsync state.

Broker and state get a Redis server each, so the split is by port, not by guessing from
command names. The worker runs under ``bench.counting_worker``, which counts every write of a
command or a pipeline to a Redis socket: one round trip each, labelled with the commands it
carried. Time-driven traffic (the retry poller, kombu's idle BRPOP and restore sweeps) is
measured over an idle window first and subtracted. Server-side ``INFO commandstats`` deltas
are kept in the details as a cross-check (they also count commands run inside Lua scripts).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from bench.common import (
    QUEUE,
    BenchError,
    Figure,
    Report,
    SandboxProcess,
    WorkerProcess,
    applied_count,
    custsync_env,
    minted_events,
    release_staged,
    seed_customers,
    stage_messages,
    start_redis,
    wait_applied,
    wait_until,
)

PUBLIC = "custsync"  # the public queue a plain Celery client sends to
SIZES = {True: (500, 2.0), False: (5000, 5.0)}  # events, idle window seconds
CONCURRENCY = 4
TARGET_STATE = 2.0  # the design: custsync's own round trips per applied event


def read_counts(path: Path) -> dict[str, Counter[str]]:
    data = json.loads(path.read_text()) if path.exists() else {}
    return {port: Counter(shapes) for port, shapes in data.items()}


def settled_counts(path: Path) -> tuple[dict[str, Counter[str]], float]:
    """Counts once the worker's dump has caught up (it writes every 0.2 s)."""
    time.sleep(0.5)
    return read_counts(path), time.time()


def delta(
    after: dict[str, Counter[str]], before: dict[str, Counter[str]], port: int
) -> Counter[str]:
    out = Counter(after.get(str(port), Counter()))
    out.subtract(before.get(str(port), Counter()))
    return out


def commandstats(client: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def per_event(
    counts: Counter[str], idle: Counter[str], idle_s: float, busy_s: float, n: int
) -> tuple[float, dict[str, float]]:
    """Round trips per event by shape, with the idle rate over the busy window taken off."""
    shapes = {}
    for label in set(counts) | set(idle):
        value = (counts[label] - idle[label] * busy_s / idle_s) / n
        if abs(value) >= 0.005:
            shapes[label] = round(value, 3)
    total = round(sum(shapes.values()), 2)  # the idle rate subtracted leaves ±0.005 of noise
    return total, dict(sorted(shapes.items(), key=lambda kv: -kv[1]))


def run(workdir: Path, *, quick: bool) -> tuple[Report, str]:
    from custsync.runtime import Runtime
    from custsync.settings import load_settings
    from custsync.worker import producer_app

    n, idle_s = SIZES[quick]
    report = Report("round_trips", quick, params={"events": n, "concurrency": CONCURRENCY})
    counts_file = workdir / "round_trips.json"
    with contextlib.ExitStack() as stack:
        state = start_redis(workdir, stack, "state")
        broker = start_redis(workdir, stack, "broker")
        state_client = redis.Redis.from_url(state.url)
        broker_client = redis.Redis.from_url(broker.url)
        version = str(state_client.info("server")["redis_version"])
        ports = {"state": state.port, "broker": broker.port}
        box = SandboxProcess(workdir)
        stack.callback(box.stop)
        env = custsync_env(
            state.url,
            box.url,
            CUSTSYNC_BROKER_URL=broker.url,
            CUSTSYNC_CONCURRENCY=str(CONCURRENCY),
            BENCH_ROUND_TRIPS_FILE=str(counts_file),
        )
        app = producer_app(Runtime(load_settings(env)))
        warm, events = minted_events(100, "rtwarm"), minted_events(n, "rt")
        seed_customers(box.client, warm + events)
        worker = WorkerProcess(env, workdir, module="bench.counting_worker")
        stack.callback(worker.stop)

        stage_messages(broker_client, app, warm)
        release_staged(broker_client)
        wait_applied(state_client, len(warm), 120, [worker])
        wait_until(counts_file.exists, 10, "the round-trip counts file")

        idle_before, t0 = settled_counts(counts_file)
        time.sleep(idle_s)
        idle_after, t1 = settled_counts(counts_file)
        idle_window = t1 - t0

        stage_messages(broker_client, app, events)
        base = applied_count(state_client)
        before, t0 = settled_counts(counts_file)
        server_before = {p: commandstats(c) for p, c in (("state", state_client),)}
        release_staged(broker_client)
        wait_applied(state_client, base + n, 60 + n / 20, [worker])
        after, t1 = settled_counts(counts_file)
        server_after = {p: commandstats(c) for p, c in (("state", state_client),)}
        busy_window = t1 - t0
        if applied_count(state_client) != base + n:
            raise BenchError("more events applied than were published")

        def counted(tag: str, release_to: str, **how: Any) -> tuple[Any, Any, float]:
            """Counts before and after ``n`` more events staged ``how``, released to
            ``release_to``."""
            more = minted_events(n, tag)
            seed_customers(box.client, more)
            stage_messages(broker_client, app, more, **how)
            start = applied_count(state_client)
            first, s0 = settled_counts(counts_file)
            release_staged(broker_client, release_to)
            wait_applied(state_client, start + n, 60 + n / 20, [worker])
            last, s1 = settled_counts(counts_file)
            return first, last, s1 - s0

        # As custsync's producers send them: apply_batch messages of 50.
        variants = {"batched": counted("rtbt", QUEUE, batch_max=50)}
        # As a plain Celery client sends them: to the public queue, forwarded by the worker.
        variants["forwarded"] = counted("rtfw", PUBLIC, queue=PUBLIC)

    result: dict[str, Any] = {}
    for role, port in ports.items():
        for name, (first, last, window) in variants.items():
            total, _ = per_event(
                delta(last, first, port),
                delta(idle_after, idle_before, port),
                idle_window,
                window,
                n,
            )
            result[f"{role}_{name}"] = total
        total, shapes = per_event(
            delta(after, before, port),
            delta(idle_after, idle_before, port),
            idle_window,
            busy_window,
            n,
        )
        result[role] = {"per_event": total, "by_shape": shapes}
    for label, value in (
        ("", result["state"]["per_event"]),
        (", batches of 50", result["state_batched"]),
    ):
        name = f"custsync state round trips/event{label}"
        report.add(Figure.of(name, value, "rt", TARGET_STATE, "design target", high=1.0))
    report.add(
        Figure.of(
            "broker round trips/event",
            result["broker"]["per_event"],
            "rt",
            2.0,
            "floor: fetch + ack",
        )
    )
    report.add(
        Figure.of(
            "broker round trips/event, batches of 50",
            result["broker_batched"],
            "rt",
            result["broker"]["per_event"],
            "one message per event",
        )
    )
    report.add(
        Figure.of(
            "broker round trips/event, via the public queue",
            result["broker_forwarded"],
            "rt",
            result["broker"]["per_event"],
            "routed by custsync",
        )
    )
    server = {
        name: round((server_after["state"].get(name, 0) - calls) / n, 3)
        for name, calls in server_before["state"].items()
        if server_after["state"].get(name, 0) - calls
    }
    report.details = {
        **result,
        "state_commandstats_per_event": server,
        "windows_s": {"idle": idle_window, "busy": busy_window},
    }
    for role in ("state", "broker"):
        top = list(result[role]["by_shape"].items())[:6]
        report.notes.append(f"{role}: " + ", ".join(f"{k} {v:g}" for k, v in top))
    return report, version
