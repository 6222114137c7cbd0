"""ingest: ``custsync serve`` against a bare gunicorn + Flask app answering 202.

Both run under the same gunicorn settings (gthread, 2 workers of 8 threads) and take the same
load: C client threads, each with its own keep-alive session, posting requests prepared
(and Standard Webhooks-signed) before the clock starts, so client cost is equal. Single-event
requests give requests/s and p50/p99 latency; batches of 500 give events/s, compared with
``publish_many`` of the same events in-process (validation plus enqueue, no HTTP).
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis
import requests

from bench.common import (
    BenchError,
    Child,
    Figure,
    Report,
    base_env,
    custsync_env,
    minted_events,
    percentile,
    start_redis,
)
from custsync.demo.webhook import signed_headers
from custsync.state.keys import partner_queue

QUEUE = partner_queue("minted")  # every event these benchmarks send is Minted's

SIZES = {True: (600, 6), False: (6000, 40)}  # (single-event requests, batches of 500)
BATCH = 500
CLIENTS = 16
SERVER = ["--workers", "2", "--threads", "8"]
SECRET = "whsec_" + base64.b64encode(b"bench-secret-for-ingest-32bytes!").decode()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], env: dict[str, str], log: Path, url: str) -> Child:
    child = Child(args, env, log)
    deadline = time.monotonic() + 30
    while True:
        child.check_alive()
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"{url}/healthz", timeout=1).ok:
                return child
        if time.monotonic() > deadline:
            child.stop()
            raise BenchError(f"{log.stem} did not answer within 30 s")
        time.sleep(0.2)


def _signed(body: bytes) -> dict[str, str]:
    return signed_headers(body, SECRET)


def _load(url: str, requests_: list[tuple[bytes, dict[str, str]]]) -> tuple[float, list[float]]:
    """Wall seconds for every request, and each one's latency; fails on any non-202."""
    latencies: list[float] = []
    lock = threading.Lock()
    todo = iter(requests_)
    errors: list[str] = []

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                item = next(todo, None)
            if item is None:
                return
            body, headers = item
            t0 = time.perf_counter()
            answer = session.post(f"{url}/v1/events", data=body, headers=headers, timeout=30)
            took = time.perf_counter() - t0
            with lock:
                latencies.append(took)
                if answer.status_code != 202:
                    errors.append(f"{answer.status_code} {answer.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise BenchError(f"{len(errors)} requests failed, first: {errors[0]}")
    return wall, latencies


def run(workdir: Path, *, quick: bool) -> tuple[Report, str]:
    from custsync.producer import publish_many
    from custsync.runtime import Runtime, set_runtime
    from custsync.settings import load_settings

    singles, batches = SIZES[quick]
    report = Report(
        "ingest",
        quick,
        params={"single_requests": singles, "batches": batches, "batch": BATCH, "clients": CLIENTS},
    )
    with contextlib.ExitStack() as stack:
        server = start_redis(workdir, stack)
        client = redis.Redis.from_url(server.url)
        version = str(client.info("server")["redis_version"])
        sources = json.dumps({"bench": {"webhook_secrets": [SECRET]}})
        env = {
            **base_env(),
            **custsync_env(server.url, "http://127.0.0.1:9", CUSTSYNC_INGEST_SOURCES=sources),
            "CUSTSYNC_INGEST_MAX_BYTES": str(4 * 1024 * 1024),
        }
        ours_url, bare_url = f"http://127.0.0.1:{_port()}", f"http://127.0.0.1:{_port()}"
        ours = _start(
            [sys.executable, "-m", "custsync.cli", "serve", "--bind", ours_url[7:], *SERVER],
            env,
            workdir / "serve.log",
            ours_url,
        )
        stack.callback(ours.stop)
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        bare = _start(
            [gunicorn, "-k", "gthread", *SERVER, "--bind", bare_url[7:], "bench.bare_app:app"],
            base_env(),
            workdir / "bare.log",
            bare_url,
        )
        stack.callback(bare.stop)

        events = minted_events(singles, "ingest-single")
        prepared = [(b, _signed(b)) for b in (json.dumps(e).encode() for e in events)]
        _load(ours_url, prepared[:50])  # connections and imports warm
        _load(bare_url, prepared[:50])
        client.delete(QUEUE)
        wall_bare, lat_bare = _load(bare_url, prepared)
        wall_ours, lat_ours = _load(ours_url, prepared[50:] + _resigned(events[:50]))
        if client.llen(QUEUE) != singles:
            raise BenchError(f"queue held {client.llen(QUEUE)} messages, expected {singles}")
        client.delete(QUEUE)

        many = minted_events(batches * BATCH, "ingest-batch")
        chunks = [many[i : i + BATCH] for i in range(0, len(many), BATCH)]
        batch_requests = _resigned_batches(chunks)
        wall_batches, _ = _load(ours_url, batch_requests)
        client.delete(QUEUE)

        rt = Runtime(load_settings(env))
        set_runtime(rt)
        stack.callback(set_runtime, None)
        publish_many(many[:100])
        client.delete(QUEUE)
        t0 = time.perf_counter()
        for chunk in chunks:
            publish_many(chunk)
        wall_many = time.perf_counter() - t0
        client.delete(QUEUE)

    rps_ours, rps_bare = singles / wall_ours, singles / wall_bare
    report.add(
        Figure.of("signed single-event requests", rps_ours, "req/s", rps_bare, "bare 202", low=0.5)
    )
    events_per_s = len(many) / wall_batches
    report.add(
        Figure.of(
            "events/s in batches of 500",
            events_per_s,
            "ev/s",
            len(many) / wall_many,
            "publish_many in-process",
            low=0.7,
        )
    )
    for q in (50, 99):
        report.add(
            Figure.of(
                f"p{q} latency, single event",
                percentile(lat_ours, q / 100) * 1000,
                "ms",
                percentile(lat_bare, q / 100) * 1000,
                f"bare 202 p{q}",
            )
        )
    report.details = {
        "wall_s": {"ours": wall_ours, "bare": wall_bare, "batches": wall_batches},
        "publish_many_wall_s": wall_many,
    }
    return report, version


def _resigned(events: list[dict[str, Any]]) -> list[tuple[bytes, dict[str, str]]]:
    """The warm-up's events again with fresh ids: a repeated id would be answered from Redis."""
    return [(b, _signed(b)) for b in (json.dumps(e).encode() for e in events)]


def _resigned_batches(chunks: list[list[dict[str, Any]]]) -> list[tuple[bytes, dict[str, str]]]:
    return [(b, _signed(b)) for b in (json.dumps(c).encode() for c in chunks)]
