"""A background replay job (what the console and ``POST /v1/replay-jobs`` start) against
``custsync dlq replay --all`` over the same DLQ, in the same run.

The CLI runs as a user runs it; the job runs in this process on the same ``JobRunner`` a
``custsync serve`` worker runs, unpaced. Both move every entry onto the Redis queue (no
partner is called), and both are checked to have queued each event exactly once.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import redis

from bench.common import ROOT, BenchError, Figure, Report, base_env, custsync_env, start_redis
from bench.dlq import entries
from custsync.state.keys import partner_queue

QUEUE = partner_queue("minted")  # every event these benchmarks send is Minted's

SIZES = {True: 5_000, False: 50_000}


def run(workdir: Path, *, quick: bool) -> tuple[Report, str]:
    from custsync.celery_app import producer_app
    from custsync.dlq.jobs import DONE, JobRunner, Jobs, Scope
    from custsync.dlq.query import Filter
    from custsync.runtime import Runtime
    from custsync.settings import load_settings

    n = SIZES[quick]
    report = Report("replay_job", quick, params={"entries": n})
    with contextlib.ExitStack() as stack:
        server = start_redis(workdir, stack)
        client = redis.Redis.from_url(server.url)
        version = str(client.info("server")["redis_version"])
        env = custsync_env(server.url, "http://127.0.0.1:9")  # nothing calls a partner
        rt = Runtime(load_settings(env))

        rt.dlq.add_many(entries(n, time.time()))
        t0 = time.perf_counter()
        cli = subprocess.run(
            [sys.executable, "-m", "custsync.cli", "dlq", "replay", "--all", "--yes"],
            env={**base_env(), **env},
            cwd=ROOT,
            capture_output=True,
            timeout=1800,
            check=False,
        )
        cli_s = time.perf_counter() - t0
        if cli.returncode != 0:
            raise BenchError(f"dlq replay exited {cli.returncode}: {cli.stderr[-500:]!r}")
        _check_queued(client, rt, n, "dlq replay")

        rt.dlq.add_many(entries(n, time.time() - 1))
        job = Jobs(rt).create(Scope(Filter(target="minted")), "bench")
        t0 = time.perf_counter()
        JobRunner(rt, producer_app(rt)).run_waiting()
        job_s = time.perf_counter() - t0
        done = Jobs(rt).get(job.job_id)
        if done is None or done.state != DONE or done.replayed != n:
            raise BenchError(f"the job ended {done and done.state} with {done and done.replayed}")
        _check_queued(client, rt, n, "the job")

        report.add(Figure.of("replay job", n / job_s, "ev/s", n / cli_s, "dlq replay --all"))
        report.details["seconds"] = {"job": job_s, "cli": cli_s}
    return report, version


def _check_queued(client: redis.Redis, rt: object, n: int, what: str) -> None:
    from custsync.broker.reading import envelopes_in

    messages: list[bytes] = client.lrange(QUEUE, 0, -1)  # type: ignore[assignment]
    ids = [e["event_id"] for raw in messages for e in envelopes_in(raw)]
    if len(ids) != len(set(ids)):
        raise BenchError(f"{what} queued {len(ids) - len(set(ids))} events twice")
    queued = len(ids)
    left = rt.dlq.count()  # type: ignore[attr-defined]
    if queued != n or left != 0:
        raise BenchError(f"{what} queued {queued} and left {left} of {n}")
    client.delete(QUEUE)
