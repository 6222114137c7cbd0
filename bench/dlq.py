"""DLQ at scale: ``dlq list`` first page and ``dlq stats`` latency, and ``dlq replay --all``.

List and stats are timed in-process (the query functions the CLI calls), each against the
raw Redis reads of the same answer (a page: ZREVRANGE + MGET + decode; stats: the pair
counts in one pipeline), and against the 200 ms budget; the CLI is timed once against the
interpreter's own start (``custsync --version``). Replay runs the real CLI (entries move in
batch messages, one Lua script per batch); its limit is redis-py pipelined LPUSH of one
ready-made single-event message per event it moved: the cost of just putting each event on
a list.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bench.common import (
    ROOT,
    BenchError,
    Figure,
    Report,
    base_env,
    custsync_env,
    median,
    minted_changes,
    start_redis,
)
from bench.profile import profiled
from custsync.broker.messages import MessageBuilder
from custsync.broker.reading import items_in
from custsync.celery_app import producer_app
from custsync.dlq.entry import REASONS, DeadLetter
from custsync.state.keys import partner_queue

QUEUE = partner_queue("minted")  # every event these benchmarks send is Minted's

SIZES = {True: 10_000, False: 100_000}
REPEAT = {True: 10, False: 30}
BUDGET_MS = 200.0
FAILURES = (("exhausted", 503), ("rejected", 422), ("not_found", 404), ("auth", 401))


def entries(count: int, now: float) -> list[DeadLetter]:
    """Valid minted events (so replay takes them all), spread over a week, four reasons."""
    out = []
    for i in range(count):
        reason, status = FAILURES[i % len(FAILURES)]
        customer = f"C-dlq-{i % (count // 2 or 1):07d}"
        event_id = f"ev-dlq-{i:07d}"
        envelope = {
            "event_id": event_id,
            "target": "minted",
            "customer_id": customer,
            "occurred_at": "2026-01-01T00:00:00+00:00",
            "sequence": i,
            "changes": minted_changes(i),
        }
        at = now - (count - i) * (7 * 86_400 / count)
        out.append(
            DeadLetter(
                event_id=event_id,
                target="minted",
                customer_id=customer,
                reason=reason,
                error_class="PartnerUnavailable" if status >= 500 else "Rejected",
                error=f"minted answered {status}: sandbox fault",
                envelope=envelope,
                status=status,
                response=json.dumps({"success": False, "code": status, "message": "sandbox fault"}),
                attempts=8 if reason == "exhausted" else 1,
                first_seen_at=at - 60,
                dead_lettered_at=at,
            )
        )
    return out


def fill(store: Any, items: list[DeadLetter]) -> str:
    if hasattr(store, "add_many"):
        store.add_many(items)
        return "DlqStore.add_many"
    for entry in items:  # before add_many existed: one transaction each
        store.add(entry)
    return "DlqStore.add"


def timed_ms(func: Callable[[], Any], repeat: int) -> float:
    func()  # warm
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append((time.perf_counter() - t0) * 1000)
    return median(times)


def cli_s(env: dict[str, str], *args: str, timeout_s: float = 900) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "custsync.cli", *args],
        env={**base_env(), **env},
        cwd=ROOT,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    if out.returncode != 0:
        raise BenchError(
            f"custsync {' '.join(args)} exited {out.returncode}: {out.stderr[-500:]!r}"
        )
    return time.perf_counter() - t0


def run(workdir: Path, *, quick: bool) -> tuple[Report, str]:
    from custsync.dlq.query import Filter, Query
    from custsync.dlq.stats import dlq_stats
    from custsync.runtime import Runtime
    from custsync.settings import load_settings

    n, repeat = SIZES[quick], REPEAT[quick]
    report = Report("dlq", quick, params={"entries": n, "repeat": repeat})
    with contextlib.ExitStack() as stack:
        server = start_redis(workdir, stack)
        client = redis.Redis.from_url(server.url)
        version = str(client.info("server")["redis_version"])
        env = custsync_env(server.url, "http://127.0.0.1:9")  # replay never calls a partner
        rt = Runtime(load_settings(env))
        store = rt.dlq
        t0 = time.perf_counter()
        how = fill(store, entries(n, time.time()))
        report.details["fill"] = {"how": how, "seconds": time.perf_counter() - t0}
        if store.count() != n:
            raise BenchError(f"DLQ holds {store.count()} entries, expected {n}")

        keys = rt.keys
        cases = {
            "all": Filter(),
            "target+reason": Filter(target="minted", reason="exhausted"),
            "customer": Filter(customer_id="C-dlq-0000007"),
        }
        for label, flt in cases.items():

            def first_page(flt: Filter = flt) -> Any:
                return Query(store, flt).page(50)

            ms = timed_ms(first_page, repeat)
            report.add(Figure.of(f"list page, {label}", ms, "ms", BUDGET_MS, "budget", high=1.0))
        raw_page = timed_ms(lambda: _raw_page(rt.redis, keys.dlq_all, keys.dlq_entry), repeat)
        all_ms = report.figures[0].value
        report.add(Figure.of("list page vs raw read", all_ms, "ms", raw_page, "ZREVRANGE+MGET"))
        stats_ms = timed_ms(lambda: dlq_stats(store), repeat)
        report.add(Figure.of("stats", stats_ms, "ms", BUDGET_MS, "budget", high=1.0))
        raw_stats = timed_ms(lambda: _raw_counts(rt.redis, keys), repeat)
        report.add(Figure.of("stats vs raw counts", stats_ms, "ms", raw_stats, "ZCARD pipeline"))

        floor = cli_s(env, "--version")
        for args in (("dlq", "list"), ("dlq", "stats")):
            wall = cli_s(env, *args)
            report.add(Figure.of(f"custsync {' '.join(args)} (CLI)", wall, "s", floor, "--version"))

        replay = subprocess.Popen(
            [sys.executable, "-m", "custsync.cli", "dlq", "replay", "--all", "--yes", "--json"],
            env={**base_env(), **env},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        t0 = time.perf_counter()
        with profiled(replay.pid, "replay"):
            _, err = replay.communicate(timeout=1800)
        replay_s = time.perf_counter() - t0
        if replay.returncode != 0:
            raise BenchError(f"dlq replay exited {replay.returncode}: {err[-500:]!r}")
        messages: list[bytes] = client.lrange(QUEUE, 0, -1)  # type: ignore[assignment]
        moved = [item for raw in messages for item in items_in(raw)]
        if len(moved) != n or store.count() != 0:
            raise BenchError(f"replay queued {len(moved)} and left {store.count()} of {n}")
        report.details["replay_messages"] = len(messages)
        client.delete(QUEUE)
        builder = MessageBuilder(producer_app(rt))
        payloads = [builder.build(envelope, delivery) for envelope, delivery in moved]
        t0 = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for i, payload in enumerate(payloads, start=1):
            pipe.lpush(QUEUE, payload)
            if i % 1000 == 0:
                pipe.execute()
        pipe.execute()
        raw_s = time.perf_counter() - t0
        report.add(
            Figure.of("replay --all", n / replay_s, "ev/s", n / raw_s, "pipelined LPUSH", low=0.25)
        )
    return report, version


def _raw_page(client: Any, index: str, keys_entry: Callable[[str], str]) -> list[Any]:
    ids = client.zrevrange(index, 0, 49)
    return [json.loads(r) for r in client.mget([keys_entry(i) for i in ids]) if r]


def _raw_counts(client: Any, keys: Any) -> list[int]:
    from custsync.dlq.store import PAIR, pair_value

    pipe = client.pipeline(transaction=False)
    pipe.zcard(keys.dlq_all)
    for reason in REASONS:
        pipe.zcard(keys.dlq_by(PAIR, pair_value("minted", reason)))
    return [int(x) for x in pipe.execute()]
