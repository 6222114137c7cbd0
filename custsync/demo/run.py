"""``custsync demo``: the whole loop on a fresh machine, ending by itself.

Embedded Redis (database 15, the demo's own), the sandbox with faults, a real worker in a
subprocess, a realistic stream, a live view, a final table and the next commands to try.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from custsync.demo.stream import Stream, build
from custsync.demo.webhook import webhook_step
from custsync.producer import enqueue, publish_many
from custsync.runtime import Runtime
from custsync.sandbox import Sandbox, SandboxClient
from custsync.settings import load_settings
from custsync.state.keys import all_queues
from custsync.targets import REGISTRY

DEMO_DB = 15
TARGETS = ("minted", "vendor")
DEMO_CREDENTIALS = {"minted": ("custsync", "minted-demo"), "vendor": ("custsync", "vendor-demo")}


def demo_env(sandbox_url: str) -> dict[str, str]:
    env = {
        "CUSTSYNC_EMBEDDED_DB": str(DEMO_DB),
        "CUSTSYNC_CONCURRENCY": "8",
        "CUSTSYNC_POLL_INTERVAL_S": "0.1",
        "CUSTSYNC_LOG_FORMAT": "json",
        "CUSTSYNC_RETRY_AFTER_MAX_S": "3",
    }
    if os.environ.get("CUSTSYNC_DATA_DIR"):
        env["CUSTSYNC_DATA_DIR"] = os.environ["CUSTSYNC_DATA_DIR"]
    for target in TARGETS:
        p = f"CUSTSYNC_{target.upper()}_"
        user, password = DEMO_CREDENTIALS[target]
        env.update(
            {
                f"{p}BASE_URL": sandbox_url,
                f"{p}USERNAME": user,
                f"{p}PASSWORD": password,
                f"{p}BACKOFF_BASE_S": "0.2",
                f"{p}BACKOFF_CAP_S": "2",
                f"{p}MAX_ATTEMPTS": "6",
                f"{p}READ_TIMEOUT_S": "5",
            }
        )
    return env


@dataclass
class Tally:
    applied: int
    superseded: int  # older than what was already applied: correctly not sent
    retried: int
    deferred: int
    dlq: dict[str, int]
    waiting: int
    queued: int

    @property
    def dead(self) -> int:
        return sum(self.dlq.values())


def tally(rt: Runtime, target: str) -> Tally:
    counters = rt.redis.hgetall(rt.keys.counters(target))
    dlq = {
        k.split(":", 1)[1]: int(v) for k, v in counters.items() if k.startswith("dead_lettered:")
    }
    return Tally(
        applied=int(counters.get("applied", 0)),
        superseded=int(counters.get("superseded", 0)) + int(counters.get("duplicate", 0)),
        retried=int(counters.get("retry_scheduled", 0)),
        deferred=int(counters.get("deferred", 0)),
        dlq=dlq,
        waiting=rt.retry_set.size(target) if target in TARGETS else 0,
        queued=0,
    )


class Worker:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CUSTSYNC_")}
        self.env = {**clean, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "custsync.cli", "worker", "-n", "demo@%h"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _faults(client: SandboxClient, stream: Stream, stop: threading.Event) -> None:
    """A flaky partner: a burst of 5xx, then of 429, from minted; an expired vendor token."""
    some_minted = sorted(stream.minted_customers)[5]
    client.script(
        "minted",
        some_minted,
        [{"status": 200, "success": False, "code": 1001, "message": "Customer is locked"}],
    )
    schedule: list[tuple[float, Callable[[], Any]]] = [
        (0.0, lambda: client.set_faults("minted", error_rate=0.3, error_status=503)),
        (2.0, client.expire_tokens),
        (
            2.5,
            lambda: client.set_faults("minted", error_rate=0.0, throttle_rate=0.1, retry_after_s=1),
        ),
        (4.5, lambda: client.set_faults("minted", throttle_rate=0.0)),
    ]
    start = time.monotonic()
    for at, action in schedule:
        if stop.wait(max(0.0, at - (time.monotonic() - start))):
            return
        action()


def _line(rt: Runtime, total: int, started: float) -> tuple[str, int]:
    tallies = {t: tally(rt, t) for t in TARGETS}
    applied = sum(t.applied for t in tallies.values())
    skipped = sum(t.superseded for t in tallies.values())
    dead = rt.dlq.count()
    waiting = sum(t.waiting for t in tallies.values())
    queued = _waiting(rt)
    retried = sum(t.retried for t in tallies.values())
    line = (
        f"{time.monotonic() - started:5.1f}s  applied {applied:>4}  superseded {skipped:>3}  "
        f"dead-lettered {dead:>3}  retries {retried:>3}  waiting {waiting:>3}  queued {queued:>4}"
    )
    return line, applied + skipped + dead


def run_demo(customers: int = 300, timeout_s: float = 180.0) -> int:
    """Returns an exit code: 0 when every event ended applied or dead-lettered in time."""
    from custsync.runtime import resolve_redis_url
    from custsync.worker import producer_app

    click.secho("custsync demo", bold=True)
    stream = build(customers)
    minted_user, minted_pw = DEMO_CREDENTIALS["minted"]
    vendor_user, vendor_pw = DEMO_CREDENTIALS["vendor"]
    with Sandbox(
        port=0,
        minted_credentials=(minted_user, minted_pw),
        vendor_credentials=(vendor_user, vendor_pw),
        token_ttl_s=600,
        faults={t: {"latency_ms": 15, "latency_jitter_ms": 10} for t in TARGETS},
    ) as box:
        client = SandboxClient(box.url)
        client.put_customers("minted", {k: v for k, v in stream.minted_customers.items() if v})
        client.put_customers("vendor", {k: v for k, v in stream.vendor_customers.items() if v})
        env = demo_env(box.url)
        rt = Runtime(load_settings(env))
        click.echo("  redis    embedded, database 15 (the demo's own; emptied first)")
        resolve_redis_url(rt.settings)
        rt.redis.flushdb()
        click.echo(f"  sandbox  {box.url}  (minted + vendor, with faults)")
        log_path = (rt.settings.data_dir or _data_dir()) / "demo-worker.log"
        worker = Worker(env, log_path)
        worker.start()
        click.echo(f"  worker   8 threads, log in {log_path}")
        total = len(stream.valid) + len(stream.foreign)
        click.echo(
            f"  stream   {len(stream.valid)} valid events for {customers + 2} customers"
            f" (1-3 versions each, out of order; vendor updates partial;"
            f" {stream.unknown_customers} unknown to the partner,"
            f" {stream.partner_refusals} the partner refuses),"
            f" {len(stream.foreign)} invalid ones from a careless producer\n"
        )
        stop = threading.Event()
        chaos = threading.Thread(target=_faults, args=(client, stream, stop), daemon=True)
        app = producer_app(rt)
        try:
            chaos.start()
            publish_many(stream.valid, app=app)
            enqueue([(e, None) for e in stream.foreign], app)
            code = _watch(rt, worker, total, timeout_s)
            if code == 0:
                click.secho(
                    "\na CRM's webhook, through the HTTP ingest (custsync serve):", bold=True
                )
                serve_log = log_path.with_name("demo-serve.log")
                code = 0 if webhook_step(env, client, serve_log) else 1
        finally:
            stop.set()
            worker.stop()
        _summary(rt, client)
    return code


def _data_dir() -> Path:
    from custsync.embedded.server import default_data_dir

    return default_data_dir()


def _watch(rt: Runtime, worker: Worker, total: int, timeout_s: float) -> int:
    started = time.monotonic()
    tty = sys.stdout.isatty()
    last_print = 0.0
    while True:
        line, done = _line(rt, total, started)
        now = time.monotonic()
        if tty:
            click.echo(f"\r{line}", nl=False)
        elif now - last_print >= 2:
            click.echo(line)
            last_print = now
        if done >= total and _waiting(rt) == 0:
            click.echo(f"\r{line}" if tty else line)
            return 0
        if not worker.alive():
            click.echo(f"\nthe worker stopped unexpectedly; see {worker.log_path}")
            return 1
        if now - started > timeout_s:
            click.echo(f"\nnot finished after {timeout_s:.0f}s; see {worker.log_path}")
            return 1
        time.sleep(0.25)


def _summary(rt: Runtime, client: SandboxClient) -> None:
    click.echo()
    names = (*TARGETS, *sorted(_other_targets(rt)))  # others: a careless producer's, pseudonymised
    width = max(len(n) for n in ("target", *names))
    header = (
        f"{'target':<{width}} {'applied':>8} {'superseded':>11} {'retried':>8} {'deferred':>8}"
        "  dead-lettered by reason"
    )
    click.secho(header, bold=True)
    for target in names:
        t = tally(rt, target)
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(t.dlq.items())) or "-"
        counts = f"{t.applied:>8} {t.superseded:>11} {t.retried:>8} {t.deferred:>8}"
        click.echo(f"{target:<{width}} {counts}  {reasons}")
    stats = client.stats()
    dupes = sum(int(stats.get(t, {}).get("duplicate_applies", 0)) for t in TARGETS)
    tokens = int(stats.get("vendor", {}).get("tokens_issued", 0))
    click.echo(
        f"\nthe partners saw {dupes} duplicate updates; vendor tokens issued: {tokens}"
        " (one expired mid-run)"
    )
    click.secho("\nnext, look at what could not be applied:", bold=True)
    prefix = f"CUSTSYNC_EMBEDDED_DB={DEMO_DB} "
    first = rt.dlq.newest(1)
    click.echo(f"  {prefix}custsync dlq list")
    click.echo(f"  {prefix}custsync dlq list --reason invalid --json")
    if first:
        click.echo(f"  {prefix}custsync dlq show {first[0].event_id}")
    click.echo("  custsync sandbox            # the partner stand-ins, to point your own worker at")
    click.echo("  (inside the repository, prefix commands with .venv/bin/)")
    data_dir = rt.settings.data_dir or _data_dir()
    click.echo(
        f"\nthe embedded Redis keeps running (data in {data_dir}) for the commands above;"
        "\nstop it with: custsync embedded stop"
    )


def _other_targets(rt: Runtime) -> set[str]:
    prefix = rt.keys.counters("")
    return {k[len(prefix) :] for k in rt.redis.scan_iter(f"{prefix}*")} - set(TARGETS)


def _waiting(rt: Runtime) -> int:
    """Messages waiting on the public queue and every partner's."""
    pipe = rt.redis.pipeline(transaction=False)
    for name in all_queues(REGISTRY):
        pipe.llen(name)
    return sum(int(n) for n in pipe.execute())
