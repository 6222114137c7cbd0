"""What every benchmark shares: figures as ratios against a limit measured in the same run,
the JSON and table report, and the processes a run starts (its own Redis, sandbox, workers).

Nothing here touches a server the run did not start: every environment is built from
scratch (the caller's ``CUSTSYNC_*`` variables are dropped) and points at our own ports.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import selectors
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis

from custsync.embedded.server import EphemeralRedis
from custsync.sandbox import SandboxClient
from custsync.sandbox.server import DEFAULT_MINTED_CREDENTIALS, DEFAULT_VENDOR_CREDENTIALS
from custsync.state.keys import partner_queue

QUEUE = partner_queue("minted")  # every event these benchmarks send is Minted's

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
STAGING = "bench:staging"  # messages wait here until one RENAME hands them all to the worker


class BenchError(RuntimeError):
    """A benchmark could not measure what it set out to (a process died, a wait ran out)."""


def wait_until(
    predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


# -- figures and the report --------------------------------------------------------------


@dataclass
class Figure:
    """One measured value against its limit; ``ratio`` is always value / limit."""

    name: str
    value: float
    unit: str
    limit: float
    limit_name: str
    ratio: float
    target: str = ""  # e.g. ">= 0.60" on the ratio
    met: bool | None = None

    @classmethod
    def of(
        cls,
        name: str,
        value: float,
        unit: str,
        limit: float,
        limit_name: str,
        *,
        low: float | None = None,
        high: float | None = None,
    ) -> Figure:
        ratio = value / limit if limit else math.nan
        parts = ([f">= {low:g}"] if low is not None else []) + (
            [f"<= {high:g}"] if high is not None else []
        )
        met = None
        if parts:
            met = (low is None or ratio >= low) and (high is None or ratio <= high)
        return cls(name, value, unit, limit, limit_name, ratio, " and ".join(parts), met)


@dataclass
class Report:
    name: str
    quick: bool
    params: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def machine_info(redis_version: str, load_at_start: Sequence[float]) -> dict[str, Any]:
    """Who else was busy shows in the load averages: ratios hold up, absolute figures don't."""
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis_version": redis_version,
        "load_avg_at_start": list(load_at_start),
        "load_avg_at_end": list(os.getloadavg()),
    }


def write_report(
    report: Report,
    results_dir: Path,
    started: float,
    redis_version: str,
    load_at_start: Sequence[float],
) -> Path:
    data = {
        "benchmark": report.name,
        "mode": "quick" if report.quick else "full",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "git": {"commit": _git("rev-parse", "HEAD"), "dirty": bool(_git("status", "--porcelain"))},
        "machine": machine_info(redis_version, load_at_start),
        "params": report.params,
        "figures": [asdict(f) for f in report.figures],
        "details": report.details,
        "notes": report.notes,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{report.name}.json"
    path.write_text(json.dumps(data, indent=2, default=_plain) + "\n")
    return path


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, int | float) else str(value)


def _num(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def print_table(report: Report) -> None:
    mode = "quick" if report.quick else "full"
    print(f"\n{report.name} ({mode})")
    rows = [("figure", "value", "limit", "ratio", "target", "")]
    for f in report.figures:
        verdict = {True: "ok", False: "MISS", None: ""}[f.met]
        rows.append(
            (
                f.name,
                f"{_num(f.value)} {f.unit}",
                f"{_num(f.limit)} ({f.limit_name})",
                "-"
                if math.isnan(f.ratio)
                else f"{f.ratio:.2f}"
                if f.ratio >= 0.1
                else f"{f.ratio:.2g}",
                f.target,
                verdict,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for note in report.notes:
        print(f"  note: {note}")


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else math.nan


# -- events -------------------------------------------------------------------------------

FIRST_NAMES = ("Ayse", "Mehmet", "Elif", "Mustafa", "Zeynep", "Emre", "Selin", "Burak")


def minted_changes(i: int) -> dict[str, Any]:
    return {
        "firstname": FIRST_NAMES[i % len(FIRST_NAMES)],
        "middlename": "",
        "lastname": f"Demir{i % 997:03d}",
        "email": f"customer{i}@example.com",
        "phone": f"+90507{i % 10_000_000:07d}",
        "gender": "MF"[i % 2],
        "identity_number": f"{10_000_000_000 + i}",
        "birthdate": f"19{60 + i % 40}-0{1 + i % 9}-1{i % 10}",
    }


def minted_events(count: int, run: str, occurred_at: str | None = None) -> list[dict[str, Any]]:
    """One event per customer (``run`` keeps ids unique), so no two wait on one lock."""
    when = occurred_at or time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    return [
        {
            "event_id": f"ev-{run}-{i:07d}",
            "target": "minted",
            "customer_id": f"C-{run}-{i:07d}",
            "occurred_at": when,
            "changes": minted_changes(i),
        }
        for i in range(count)
    ]


def seed_customers(client: SandboxClient, events: Sequence[Mapping[str, Any]]) -> None:
    """The sandbox answers 404 for unknown customers: create every one the events update."""
    for start in range(0, len(events), 5000):
        chunk = events[start : start + 5000]
        client.put_customers("minted", {e["customer_id"]: dict(e["changes"]) for e in chunk})


def stage_messages(
    client: redis.Redis,
    app: Any,
    events: Iterable[Mapping[str, Any]],
    queue: str | None = None,
    batch_max: int = 1,
) -> int:
    """Build the events' Celery messages into a staging list: one per event (as a plain
    client sending to ``queue`` would, or a producer routing each), or ``apply_batch``
    messages of ``batch_max`` events as custsync's producers send them. Returns events."""
    from custsync.broker.messages import MessageBuilder, batch_label, build_message, item_json

    client.delete(STAGING)
    pipe = client.pipeline(transaction=False)
    staged = 0
    listed = list(events)
    builder = MessageBuilder(app)
    for start in range(0, len(listed), batch_max):
        part = listed[start : start + batch_max]
        if batch_max == 1:
            _, payload = build_message(app, part[0], None, queue)
        else:
            route = queue or builder.key_for(part[0])[len(builder.prefix) :]
            texts = [item_json(e, None) for e in part]
            payload = builder.build_batch(texts, route, batch_label(part))
        pipe.lpush(STAGING, payload)
        staged += len(part)
        if staged % 1000 < len(part):
            pipe.execute()
    pipe.execute()
    return staged


def release_staged(client: redis.Redis, queue: str = QUEUE) -> float:
    """Hand every staged message to the workers at once; returns when (epoch seconds)."""
    if client.exists(queue):
        raise BenchError(f"queue {queue!r} is not empty; cannot release the staged messages")
    at = time.time()
    client.rename(STAGING, queue)
    return at


# -- processes ----------------------------------------------------------------------------


def base_env() -> dict[str, str]:
    """This process' environment without any custsync setting it might point elsewhere."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CUSTSYNC_")}


def custsync_env(redis_url: str, sandbox_url: str, **overrides: str) -> dict[str, str]:
    env = {
        "CUSTSYNC_REDIS_URL": redis_url,
        "CUSTSYNC_MINTED_BASE_URL": sandbox_url,
        "CUSTSYNC_MINTED_USERNAME": DEFAULT_MINTED_CREDENTIALS[0],
        "CUSTSYNC_MINTED_PASSWORD": DEFAULT_MINTED_CREDENTIALS[1],
        "CUSTSYNC_VENDOR_BASE_URL": sandbox_url,
        "CUSTSYNC_VENDOR_USERNAME": DEFAULT_VENDOR_CREDENTIALS[0],
        "CUSTSYNC_VENDOR_PASSWORD": DEFAULT_VENDOR_CREDENTIALS[1],
        "CUSTSYNC_LOG_FORMAT": "json",
    }
    env.update(overrides)
    return env


def start_redis(workdir: Path, stack: contextlib.ExitStack, name: str = "redis") -> EphemeralRedis:
    server = EphemeralRedis(workdir / name).start()
    stack.callback(server.stop)
    return server


def redis_pid(client: redis.Redis) -> int:
    return int(client.info("server")["process_id"])


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


class Child:
    """A subprocess this run started: its CPU and memory, and a bounded stop."""

    def __init__(
        self, args: list[str], env: Mapping[str, str], log_path: Path, *, pipe: bool = False
    ) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            out: Any = subprocess.PIPE if pipe else log
            self.proc = subprocess.Popen(args, env=dict(env), cwd=ROOT, stdout=out, stderr=log)
        self.ps = psutil.Process(self.proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.log_path.stem} exited early:\n{self.log_tail()}")

    def cpu_s(self) -> float:
        return cpu_s(self.ps)

    def rss_bytes(self) -> int:
        return int(self.ps.memory_info().rss)

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()

    def read_line(self, timeout_s: float) -> str:
        """The next stdout line, or BenchError when none comes in time."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout_s):
                raise BenchError(f"{self.log_path.stem} said nothing in {timeout_s:g}s")
        return self.proc.stdout.readline().decode(errors="replace").strip()


class SandboxProcess(Child):
    """``custsync sandbox`` in its own process, so its CPU can be told from ours."""

    def __init__(self, workdir: Path) -> None:
        args = [sys.executable, "-m", "custsync.cli", "sandbox", "--port", "0"]
        super().__init__(args, base_env(), workdir / "sandbox.log", pipe=True)
        line = self.read_line(30)
        if "listening on " not in line:
            self.stop()
            raise BenchError(f"sandbox did not start: {line!r}\n{self.log_tail()}")
        self.url = line.split("listening on ", 1)[1].split()[0]
        self.client = SandboxClient(self.url, timeout_s=60)

    def arrivals(self, keys: set[str], since_seq: int = 0) -> dict[str, float]:
        """Arrival time of the applied (200) request of each idempotency key asked for."""
        found: dict[str, float] = {}
        for r in self.client.requests("minted", since_seq=since_seq):
            key = r.get("idempotency_key")
            if r.get("status") == 200 and key in keys and key not in found:
                found[key] = float(r["at"])
        return found

    def last_seq(self) -> int:
        """The record's sequence so far: one per partner request (the sandbox never resets)."""
        return int(self.client.stats()["total_requests"])


class WorkerProcess(Child):
    """``custsync worker`` (or a module that wraps it) with the given settings."""

    def __init__(self, env: Mapping[str, str], workdir: Path, module: str = "custsync.cli") -> None:
        name = f"bench-{uuid.uuid4().hex[:6]}"
        args = [sys.executable, "-m", module, "worker", "-n", f"{name}@%h"]
        super().__init__(args, {**base_env(), **env}, workdir / f"{name}.log")


def applied_count(client: redis.Redis, target: str = "minted") -> int:
    from custsync.state.keys import Keys

    return int(client.hget(Keys().counters(target), "applied") or 0)


def wait_applied(
    client: redis.Redis, count: int, timeout_s: float, workers: Sequence[Child] = ()
) -> float:
    """Wait until ``count`` events are applied in all; returns when that was seen."""

    def done() -> bool:
        for w in workers:
            w.check_alive()
        return applied_count(client) >= count

    wait_until(done, timeout_s, f"{count} applied events", interval_s=0.02)
    return time.time()


@contextlib.contextmanager
def cpu_window(procs: Mapping[str, psutil.Process]) -> Iterator[dict[str, float]]:
    """CPU seconds each process used inside the block (filled in when it ends), plus wall."""
    before = {name: cpu_s(p) for name, p in procs.items()}
    started = time.monotonic()
    used: dict[str, float] = {}
    yield used
    for name, p in procs.items():
        used[name] = cpu_s(p) - before[name]
    used["wall"] = time.monotonic() - started
