"""``custsync status``: per target the queue, retries, DLQ, pause, breaker and last success."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from custsync import exitcodes
from custsync.cli.common import echo_json, handle_errors, plural, runtime
from custsync.cli.dlq_options import age, when
from custsync.state.breaker import BreakerState
from custsync.status import collect
from custsync.targets import REGISTRY


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
        waiting = plural(queue["waiting"], "message")
        click.echo(f"queues  {waiting} waiting{held} (all queues; a batch is one message)")
        for name, depth in queue["queues"].items():
            click.echo(f"  {name:<20}{plural(depth, 'message')} waiting")
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
    _other_dlq(state["dlq_other"])


def _other_dlq(counts: dict[str, dict[str, int]]) -> None:
    """DLQ entries no target section above shows, one line per name."""
    if counts:
        click.echo("\nDLQ of no configured target")
    for name, reasons in counts.items():
        shown = ", ".join(f"{r} {n}" for r, n in reasons.items())
        if name == "-":
            whose = "(no target)"
        elif name in REGISTRY:
            whose = f"{name} (not configured here)"
        else:  # stored by its pseudonym (custsync.privacy.named_or_pseudonym)
            whose = f"{name} (names no partner)"
        click.echo(f"  {whose:<30} {shown}")


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
