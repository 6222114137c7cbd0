"""``custsync status``: per target the queue, retries, DLQ, pause, breaker and last success."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from custsync import exitcodes
from custsync.cli.common import echo_json, handle_errors, plural, runtime
from custsync.cli.dlq_options import age, when
from custsync.dlq.replay import uses_atomic_move
from custsync.dlq.stats import by_target_reason
from custsync.embedded.server import mask_url
from custsync.runtime import Runtime
from custsync.state.breaker import Breaker, BreakerState
from custsync.state.keys import QUEUE, UNACKED


def queue_state(rt: Runtime) -> dict[str, Any]:
    """Depth of the one queue all targets share (and, on Redis, messages held by workers)."""
    if uses_atomic_move(rt):
        pipe = rt.redis.pipeline(transaction=False)
        pipe.llen(QUEUE)
        pipe.hlen(UNACKED)
        waiting, held = pipe.execute()
        return {"name": QUEUE, "waiting": int(waiting), "in_progress": int(held)}
    broker = rt.settings.broker_url or ""
    try:
        from custsync.worker import producer_app

        with producer_app(rt).connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)
            declared = conn.default_channel.queue_declare(queue=QUEUE, passive=True)
        return {"name": QUEUE, "waiting": int(declared.message_count), "in_progress": None}
    except Exception as exc:  # any transport's failure: report it, keep the rest of the status
        error = f"cannot reach the broker at {mask_url(broker)}: {type(exc).__name__}"
        return {"name": QUEUE, "waiting": None, "in_progress": None, "error": error}


def breaker_state(fields: dict[str, str], threshold: int, now: float) -> dict[str, Any]:
    """The breaker as the poller and the pipeline read it: a state word, not its raw hash
    (whose c:<customer> fields name failing customers: counted, never shown)."""
    breaker = Breaker.read(fields, threshold, now)
    return {
        "state": breaker.state.value,
        "failing_customers": breaker.failures,
        "threshold": threshold,
        "open_until": breaker.opened_until,
    }


def target_state(rt: Runtime, name: str, dlq: dict[str, int], now: float) -> dict[str, Any]:
    keys = rt.keys
    pipe = rt.redis.pipeline(transaction=False)
    pipe.get(keys.pause(name))
    pipe.hgetall(keys.breaker(name))
    pipe.get(keys.last_success(name))
    pause_raw, breaker, last = pipe.execute()
    pause = json.loads(pause_raw) if pause_raw else None
    if pause and float(pause.get("until", 0)) <= now:
        pause = None  # expired but not yet evicted
    return {
        "retry": {"size": rt.retry_set.size(name), "next_due": rt.retry_set.next_due(name)},
        "dlq": dlq,
        "paused": pause,
        "breaker": breaker_state(breaker, rt.settings.targets[name].breaker.failures, now),
        "last_success": float(last) if last else None,
    }


def collect(rt: Runtime) -> dict[str, Any]:
    now = time.time()
    names = sorted(rt.settings.targets)
    counts = by_target_reason(rt.dlq, sorted({*names, *rt.dlq.values("target")}))
    return {
        "redis": mask_url(rt.redis_url),
        "queue": queue_state(rt),
        "targets": {n: target_state(rt, n, counts.pop(n, {}), now) for n in names},
        "dlq_total": rt.dlq.count(),
        "dlq_other": counts,  # entries of unconfigured or missing targets
    }


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="As one JSON object.")
@handle_errors
def status_command(as_json: bool) -> None:
    """Per target: queue depth, retry backlog and next due time, DLQ by reason, pause and
    breaker state, last success. Exit code 4 when Redis or the broker cannot be reached."""
    state = collect(runtime())
    if as_json:
        echo_json(state)
    else:
        _print(state)
    if state["queue"].get("error"):
        sys.exit(exitcodes.UNAVAILABLE)


def _print(state: dict[str, Any]) -> None:
    now = time.time()
    queue = state["queue"]
    click.echo(f"redis   {state['redis']}")
    if queue.get("error"):
        click.echo(f"queue   {queue['name']}: {queue['error']}")
    else:
        held = f", {queue['in_progress']} in progress" if queue["in_progress"] is not None else ""
        click.echo(f"queue   {queue['name']}: {queue['waiting']} waiting{held} (all targets)")
    click.echo(f"DLQ     {plural(state['dlq_total'], 'entry', 'entries')}")
    if not state["targets"]:
        click.echo("no target is configured (set CUSTSYNC_<TARGET>_BASE_URL)")
    for name, t in state["targets"].items():
        click.echo(f"\n{name}")
        retry = t["retry"]
        due = retry["next_due"]
        next_due = f", next due {_relative(due, now)}" if due is not None else ""
        click.echo(f"  retry set     {retry['size']} waiting{next_due}")
        dlq = ", ".join(f"{r} {n}" for r, n in t["dlq"].items()) or "empty"
        click.echo(f"  DLQ           {dlq}")
        pause = t["paused"]
        paused = f"until {when(float(pause['until']))} ({pause.get('reason')})" if pause else "no"
        click.echo(f"  paused        {paused}")
        click.echo(f"  breaker       {_breaker(t['breaker'], now)}")
        last = t["last_success"]
        click.echo(f"  last success  {f'{when(last)} ({age(last)} ago)' if last else 'never'}")
    for name, reasons in state["dlq_other"].items():
        shown = ", ".join(f"{r} {n}" for r, n in reasons.items())
        whose = "messages without a target" if name == "-" else f"unconfigured target {name}"
        click.echo(f"\nDLQ of {whose}: {shown}")


def _relative(ts: float, now: float) -> str:
    return f"in {age(now, ts)}" if ts > now else f"{age(ts, now)} overdue"


def _breaker(breaker: dict[str, Any], now: float) -> str:
    failing = breaker["failing_customers"]
    count = f"{plural(failing, 'customer')} failing of {breaker['threshold']} to open"
    if breaker["state"] == BreakerState.OPEN:
        until = float(breaker["open_until"])
        return f"open until {when(until)} ({_relative(until, now)}); {count}"
    if breaker["state"] == BreakerState.HALF_OPEN:
        return f"half-open: the next event probes the partner; {count}"
    return f"closed; {count}" if failing else "closed"
