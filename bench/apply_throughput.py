"""apply throughput: events through publish → worker → sandbox, against the raw limit.

custsync's own producers send ``apply_batch`` messages of CUSTSYNC_BATCH_MAX (50) events:
that is the main figure. Without latency the run is repeated with one ``apply_update``
message per event as a plain ``send_task`` client sends them (to the public queue, forwarded
by the worker to Minted's): the public contract's cost.

The raw limit is the same partner calls (same sandbox, bodies, headers and Digest auth) made
by a plain ``requests.Session`` loop with as many threads as the worker has, in the same run;
with 50 ms of partner latency the limit is concurrency ÷ latency. Rates come from the
sandbox's own arrival times (first to last applied request), so process start-up and the
staging of messages are outside every window. Messages are staged in a side list and handed
to the worker with one RENAME, so publishing does not compete with the worker for CPU.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import redis
import requests
from requests.auth import HTTPDigestAuth

from bench.common import (
    QUEUE,
    BenchError,
    Figure,
    Report,
    SandboxProcess,
    WorkerProcess,
    applied_count,
    cpu_window,
    custsync_env,
    median,
    minted_events,
    percentile,
    redis_pid,
    release_staged,
    seed_customers,
    stage_messages,
    start_redis,
    wait_applied,
)
from bench.profile import profiled
from custsync.sandbox.server import DEFAULT_MINTED_CREDENTIALS

LATENCY_MS = 50.0
BATCH_MAX = 50  # CUSTSYNC_BATCH_MAX's default
PUBLIC = "custsync"  # where a plain Celery client sends


@dataclass(frozen=True)
class Config:
    concurrency: int
    latency_ms: float
    events: int
    raw_twice: bool  # raw before and after custsync: the mean is the limit (drift on a busy box)
    paced: int  # events published one at a time for publish → partner latency
    processes: int = 1  # worker processes sharing the concurrency (threads = concurrency / this)


QUICK = [Config(8, 0.0, 2000, False, 200), Config(8, LATENCY_MS, 400, False, 0)]
FULL = [
    Config(8, 0.0, 20_000, True, 2000),
    Config(8, 0.0, 20_000, True, 0, processes=2),
    Config(8, LATENCY_MS, 3000, True, 0),
    Config(32, LATENCY_MS, 8000, True, 0),
]


@dataclass
class Run:
    events: int
    rate: float  # applied requests per second, by sandbox arrival times
    cpu: dict[str, float]  # CPU seconds per process over the window, and "wall"

    def per_1k(self, *names: str) -> float:
        """CPU ms per event (= s per 1,000) of the named processes; "worker" sums them all."""
        used = sum(v for k, v in self.cpu.items() if k in names or k.rstrip("0123456789") in names)
        return used / self.events * 1000


def _rate(arrivals: Mapping[str, float], expected: int) -> float:
    if len(arrivals) < expected:
        raise BenchError(f"sandbox saw {len(arrivals)} of {expected} applied requests")
    times = sorted(arrivals.values())
    return (len(times) - 1) / max(1e-9, times[-1] - times[0])


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # the best a plain loop can do (custsync does the same)
    session.auth = HTTPDigestAuth(*DEFAULT_MINTED_CREDENTIALS)
    session.headers.update({"api-version": "2", "x-client-id": "web", "Accept-Language": "tr"})
    return session


def _call(session: requests.Session, base: str, event: Mapping[str, Any]) -> None:
    url = f"{base}/partner/customer/{quote(event['customer_id'], safe='')}"
    response = session.patch(
        url, json=event["changes"], headers={"Idempotency-Key": event["event_id"]}, timeout=30
    )
    if response.status_code != 200 or response.json().get("success") is not True:
        raise BenchError(f"raw call answered {response.status_code}: {response.text[:200]}")


def raw_loop(
    box: SandboxProcess,
    events: Sequence[dict[str, Any]],
    warm: Sequence[dict[str, Any]],
    concurrency: int,
    procs: Mapping[str, psutil.Process],
) -> Run:
    """The same calls from ``concurrency`` threads, each with its own warmed-up session."""
    barrier = threading.Barrier(concurrency + 1, timeout=60)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            session = _session()
            _call(session, box.url, warm[index])  # earns the Digest nonce, opens the socket
            barrier.wait()
            for event in events[index::concurrency]:
                _call(session, box.url, event)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    seq = box.last_seq()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait()
    with profiled(os.getpid(), f"raw-client-{len(events)}"), cpu_window(procs) as cpu:
        for t in threads:
            t.join(600)
    if errors or any(t.is_alive() for t in threads):
        raise BenchError(f"raw loop failed: {errors[:1] or 'threads still running'}")
    arrivals = box.arrivals({e["event_id"] for e in events}, seq)
    return Run(len(events), _rate(arrivals, len(events)), cpu)


def custsync_run(
    client: redis.Redis,
    app: Any,
    box: SandboxProcess,
    workers: Sequence[WorkerProcess],
    events: Sequence[dict[str, Any]],
    procs: Mapping[str, psutil.Process],
    *,
    single: bool = False,
) -> Run:
    """Batch messages as custsync's producers send them, or (``single``) one message per
    event on the public queue as a plain ``send_task`` client sends them."""
    if single:
        stage_messages(client, app, events, queue=PUBLIC)
    else:
        stage_messages(client, app, events, batch_max=BATCH_MAX)
    base = applied_count(client)
    seq = box.last_seq()
    label = f"worker-{'single' if single else 'batched'}-{len(events)}"
    with profiled(workers[0].pid, label), cpu_window(procs) as cpu:
        release_staged(client, PUBLIC if single else QUEUE)
        wait_applied(client, base + len(events), 60 + len(events) / 20, workers)
    arrivals = box.arrivals({e["event_id"] for e in events}, seq)
    return Run(len(events), _rate(arrivals, len(events)), cpu)


def paced_latency(
    client: redis.Redis,
    app: Any,
    box: SandboxProcess,
    workers: Sequence[WorkerProcess],
    events: Sequence[dict[str, Any]],
    rate: float,
    burst: int = 1,
) -> list[float]:
    """Publish ``burst`` events at a time (one: ``publish``; more: ``publish_many``, one batch
    message) at ``rate`` events/s; seconds from publish to partner arrival, per event."""
    from custsync.producer import publish, publish_many

    base = applied_count(client)
    seq = box.last_seq()
    published: dict[str, float] = {}
    started = time.monotonic()
    for i in range(0, len(events), burst):
        part = events[i : i + burst]
        time.sleep(max(0.0, started + i / rate - time.monotonic()))
        now = time.time()
        published.update((event["event_id"], now) for event in part)
        if burst == 1:
            publish(part[0], app=app)
        else:
            publish_many(part, app=app)
    wait_applied(client, base + len(events), 60, workers)
    arrivals = box.arrivals(set(published), seq)
    return [arrivals[k] - published[k] for k in published if k in arrivals]


def single_call_latency(box: SandboxProcess, events: Sequence[dict[str, Any]]) -> float:
    """Median seconds of one plain request on an idle sandbox: the latency floor."""
    session = _session()
    times = []
    for event in events:
        t0 = time.perf_counter()
        _call(session, box.url, event)
        times.append(time.perf_counter() - t0)
    return median(times[1:])


def run(workdir: Path, *, quick: bool) -> tuple[Report, str]:
    from custsync.runtime import Runtime, set_runtime
    from custsync.settings import load_settings
    from custsync.worker import producer_app

    configs = QUICK if quick else FULL
    report = Report("apply_throughput", quick, params={"configs": [c.__dict__ for c in configs]})
    with contextlib.ExitStack() as stack:
        server = start_redis(workdir, stack)
        client = redis.Redis.from_url(server.url)
        version = str(client.info("server")["redis_version"])
        box = SandboxProcess(workdir)
        stack.callback(box.stop)
        rt = Runtime(load_settings(custsync_env(server.url, box.url)))
        set_runtime(rt)
        stack.callback(set_runtime, None)
        app = producer_app(rt)
        redis_proc = psutil.Process(redis_pid(client))
        for n, cfg in enumerate(configs):
            _one_config(report, workdir, server.url, client, app, box, redis_proc, cfg, n)
    return report, version


def _one_config(
    report: Report,
    workdir: Path,
    redis_url: str,
    client: redis.Redis,
    app: Any,
    box: SandboxProcess,
    redis_proc: psutil.Process,
    cfg: Config,
    n: int,
) -> None:
    from custsync.runtime import Runtime
    from custsync.settings import load_settings
    from custsync.worker import producer_app

    c, k = cfg.concurrency, cfg.processes
    tag = f"C={c}" + (f" as {k}x{c // k}" if k > 1 else "")
    tag += f", +{cfg.latency_ms:g} ms" if cfg.latency_ms else ""
    run_id = f"r{n}"
    sets = {
        name: minted_events(size, f"{run_id}{name}")
        for name, size in (("warm", 2 * c + 50), ("raw1", cfg.events), ("raw2", cfg.events))
    }
    sets["cs"] = minted_events(cfg.events, f"{run_id}cs")
    if not cfg.latency_ms:
        sets["single"] = minted_events(cfg.events, f"{run_id}single")
    sets["paced"] = minted_events(cfg.paced + 100, f"{run_id}paced")
    for events in sets.values():
        seed_customers(box.client, events)
    box.client.clear_faults("minted")
    if cfg.latency_ms:
        box.client.set_faults("minted", latency_ms=cfg.latency_ms)
    env = custsync_env(redis_url, box.url, CUSTSYNC_CONCURRENCY=str(c // k))
    workers = [WorkerProcess(env, workdir) for _ in range(k)]
    try:
        warm = sets["warm"]
        base = applied_count(client)
        staged = stage_messages(client, app, warm[: 2 * c + 20])
        release_staged(client)
        wait_applied(client, base + staged, 120, workers)  # started and warmed up
        client_procs = {"client": psutil.Process(), "redis": redis_proc, "sandbox": box.ps}
        worker_procs = {f"worker{i}": w.ps for i, w in enumerate(workers)}
        worker_procs.update(redis=redis_proc, sandbox=box.ps)
        raws = [raw_loop(box, sets["raw1"], warm[-c:], c, client_procs)]
        cs = custsync_run(client, app, box, workers, sets["cs"], worker_procs)
        single = None
        if not cfg.latency_ms:
            single = custsync_run(
                client, app, box, workers, sets["single"], worker_procs, single=True
            )
        if cfg.raw_twice:
            raws.append(raw_loop(box, sets["raw2"], warm[-c:], c, client_procs))
        latencies: list[float] = []
        bursts: list[float] = []
        unbatched: list[float] = []
        if cfg.paced:
            # Low load: half of what the worker takes as one message per event (what publish()
            # of a lone event sends), so no queue builds up.
            low = max(5.0, (single.rate if single else cs.rate) / 2)
            latencies = paced_latency(client, app, box, workers, sets["paced"][: cfg.paced], low)
            burst_events = minted_events(cfg.paced, f"{run_id}burst")
            apart = minted_events(cfg.paced, f"{run_id}apart")
            seed_customers(box.client, burst_events + apart)
            bursts = paced_latency(client, app, box, workers, burst_events, low, burst=10)
            # The same bursts sent as ten messages each (CUSTSYNC_BATCH_MAX=1): before batches.
            singles_env = custsync_env(redis_url, box.url, CUSTSYNC_BATCH_MAX="1")
            singles_app = producer_app(Runtime(load_settings(singles_env)))
            unbatched = paced_latency(client, singles_app, box, workers, apart, low, burst=10)
    finally:
        for w in workers:
            w.stop()
    raw_rate = sum(r.rate for r in raws) / len(raws)
    if cfg.latency_ms:
        limit = c / (cfg.latency_ms / 1000)
        report.add(
            Figure.of(f"events/s {tag}", cs.rate, "ev/s", limit, "concurrency ÷ latency", low=0.9)
        )
        report.add(Figure.of(f"raw requests/s {tag}", raw_rate, "req/s", limit, "c ÷ latency"))
    else:
        report.add(Figure.of(f"events/s {tag}", cs.rate, "ev/s", raw_rate, "raw requests", low=0.6))
        if single is not None:
            report.add(
                Figure.of(
                    f"events/s {tag}, single messages via send_task",
                    single.rate,
                    "ev/s",
                    raw_rate,
                    "raw requests",
                    low=0.45,
                )
            )
    report.add(
        Figure.of(
            f"CPU s/1k events {tag} (worker+redis+sandbox)",
            cs.per_1k("worker", "redis", "sandbox"),
            "s",
            sum(r.per_1k("client", "redis", "sandbox") for r in raws) / len(raws),
            "raw: client+redis+sandbox",
        )
    )
    report.add(
        Figure.of(
            f"client CPU ms/event {tag}",
            cs.per_1k("worker"),
            "ms",
            sum(r.per_1k("client") for r in raws) / len(raws),
            "raw requests client",
        )
    )
    for who, r in (("custsync", cs), ("raw", raws[0])):
        busy = r.cpu["sandbox"] / r.cpu["wall"]
        report.add(Figure.of(f"sandbox CPU {tag}, {who} run", busy, "cores", 1.0, "one core (GIL)"))
    if latencies:
        floor = single_call_latency(box, sets["paced"][cfg.paced :])
        for q in (0.5, 0.99):
            name = f"publish→partner p{q * 100:g} {tag}"
            value = percentile(latencies, q) * 1000
            report.add(Figure.of(name, value, "ms", floor * 1000, "one plain request"))
            report.add(
                Figure.of(
                    f"{name}, bursts of 10 as one batch",
                    percentile(bursts, q) * 1000,
                    "ms",
                    percentile(unbatched, q) * 1000,
                    "as 10 messages",
                )
            )
    report.details[tag] = {
        "custsync": cs.__dict__,
        "raw": [r.__dict__ for r in raws],
        "latency_samples": len(latencies),
        "worker_cpu_cores": cs.per_1k("worker") * cs.events / 1000 / cs.cpu["wall"],
    }
