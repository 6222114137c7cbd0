"""backlog memory: worker RSS while 0 → N events wait in the retry set, then the drain rate.

The partner goes down (a sandbox outage answering 503). Part of the backlog goes through the
worker for real (each event is tried or deferred by the pipeline and lands in the retry set);
the rest is added straight to the retry set in the same member format, because pushing
100k events one by one through a worker only to fail would measure the failure path's CPU,
not its memory. The worker's RSS is the figure (empty → full, limit: its own RSS when empty);
then the partner comes back and the whole backlog drains, against the limit of the same
worker's apply rate on fresh events measured at the start of the run.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import redis

from bench.common import (
    BenchError,
    Figure,
    Report,
    SandboxProcess,
    WorkerProcess,
    applied_count,
    custsync_env,
    median,
    minted_events,
    release_staged,
    seed_customers,
    stage_messages,
    start_redis,
    wait_applied,
    wait_until,
)
from bench.profile import profiled

# backlog, of which through the worker, fresh events for the limit, events drained and timed
SIZES = {True: (10_000, 1_000, 1_500, 1_500), False: (100_000, 10_000, 4_000, 100_000)}
STEPS = 4  # RSS readings while the direct part of the backlog fills
CONCURRENCY = 8


def rss_mb(worker: WorkerProcess, samples: int = 3) -> float:
    readings = []
    for _ in range(samples):
        worker.check_alive()
        readings.append(worker.rss_bytes() / 2**20)
        time.sleep(0.2)
    return median(readings)


def backlog(client: redis.Redis, keys: object) -> int:
    from custsync.state.keys import Keys

    assert isinstance(keys, Keys)
    return int(client.zcard(keys.retry("minted"))) + int(client.zcard(keys.retry_claimed("minted")))


def run(workdir: Path, *, quick: bool) -> tuple[Report, str]:
    from custsync.delivery import Delivery
    from custsync.runtime import Runtime
    from custsync.settings import load_settings
    from custsync.state.keys import Keys, partner_queue

    QUEUE = partner_queue("minted")  # its events are Minted's
    from custsync.state.retryset import schedule
    from custsync.worker import producer_app

    total, via_worker, warm_n, drained = SIZES[quick]
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        phases[name] = round(time.monotonic() - mark, 1)
        mark = time.monotonic()

    report = Report(
        "backlog_memory",
        quick,
        params={
            "backlog": total,
            "through_worker": via_worker,
            "drained_and_timed": drained,
            "concurrency": CONCURRENCY,
        },
    )
    keys = Keys()
    with contextlib.ExitStack() as stack:
        server = start_redis(workdir, stack)
        client = redis.Redis.from_url(server.url)
        version = str(client.info("server")["redis_version"])
        box = SandboxProcess(workdir)
        stack.callback(box.stop)
        env = custsync_env(
            server.url,
            box.url,
            CUSTSYNC_CONCURRENCY=str(CONCURRENCY),
            # Keep every event waiting, never exhausted, and come back quickly.
            CUSTSYNC_MINTED_MAX_ATTEMPTS="1000",
            CUSTSYNC_MINTED_BACKOFF_BASE_S="0.5",
            CUSTSYNC_MINTED_BACKOFF_CAP_S="2",
            CUSTSYNC_MINTED_BREAKER_COOLDOWN_S="0.5",
            CUSTSYNC_MINTED_BREAKER_COOLDOWN_MAX_S="1",
            CUSTSYNC_MINTED_READ_TIMEOUT_S="5",
        )
        rt = Runtime(load_settings(env))
        app = producer_app(rt)
        warm = minted_events(warm_n, "warm")
        events = minted_events(total, "backlog")
        seed_customers(box.client, warm + events)
        worker = WorkerProcess(env, workdir)
        stack.callback(worker.stop)

        # The limit: this worker's apply rate on fresh events, warm sockets and imports.
        stage_messages(client, app, warm[:200])
        release_staged(client)
        wait_applied(client, 200, 120, [worker])
        seq = box.last_seq()
        stage_messages(client, app, warm[200:])
        release_staged(client)
        wait_applied(client, warm_n, 60 + warm_n / 20, [worker])
        arrivals = sorted(box.arrivals({e["event_id"] for e in warm[200:]}, seq).values())
        fresh_rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
        rss = {"empty": rss_mb(worker)}
        phase("start and fresh apply")

        box.client.set_faults("minted", outage_s=24 * 3600)  # 503 until cleared
        stage_messages(client, app, events[:via_worker])
        release_staged(client)

        def all_waiting() -> bool:
            worker.check_alive()
            return backlog(client, keys) >= via_worker and not client.llen(QUEUE)

        wait_until(
            all_waiting,
            60 + via_worker / 20,
            f"{via_worker} events in the retry set",
            interval_s=0.1,
        )
        rss[str(via_worker)] = rss_mb(worker)
        phase("through the worker")

        direct = events[via_worker:]
        step = max(1, len(direct) // STEPS)
        now = time.time()
        for start in range(0, len(direct), step):
            pipe = client.pipeline(transaction=False)
            for i, envelope in enumerate(direct[start : start + step]):
                delivery = Delivery(attempts=1, first_seen_at=now)
                schedule(pipe, keys, "minted", envelope, delivery, now + (i % 100) / 100)
                if i % 1000 == 999:
                    pipe.execute()
            pipe.execute()
            time.sleep(0.5)  # the poller looks at it (and is told the target is paused)
            rss[str(backlog(client, keys))] = rss_mb(worker)
        waiting = backlog(client, keys)
        if waiting < total - CONCURRENCY:  # a probe may be out
            raise BenchError(f"retry set holds {waiting} of {total}")
        full = rss_mb(worker)
        used_memory = int(client.info("memory")["used_memory"])
        phase("straight into the retry set")

        base = applied_count(client)
        box.client.clear_faults("minted")
        t0 = time.time()
        with profiled(worker.pid, "drain"):
            first = wait_applied(client, base + 1, 60, [worker])
            done = wait_applied(client, base + drained, 120 + drained / 20, [worker])
        drain_rate = (drained - 1) / (done - first)
        resumed_s = first - t0
        if drained == total:
            rss["drained"] = rss_mb(worker)
        phase("drain")

    report.add(
        Figure.of(
            f"worker RSS, {total} waiting", full, "MiB", rss["empty"], "empty", low=0.9, high=1.1
        )
    )
    if "drained" in rss:
        after = rss["drained"]
        report.add(Figure.of("worker RSS after the drain", after, "MiB", rss["empty"], "empty"))
    report.add(Figure.of("drain rate", drain_rate, "ev/s", fresh_rate, "fresh apply rate"))
    pause_s = float(env["CUSTSYNC_MINTED_BREAKER_COOLDOWN_MAX_S"]) + rt.settings.poll_interval_s
    report.add(Figure.of("first apply after recovery", resumed_s, "s", pause_s, "cooldown + poll"))
    report.details = {
        "rss_mb_by_backlog": rss,
        "redis_used_memory_mb": used_memory / 2**20,
        "fresh_rate": fresh_rate,
        "phases_s": phases,
    }
    return report, version
