"""``custsync dlq list|show|stats``: look at what could not be applied."""

from __future__ import annotations

import json
from typing import Any

import click

from custsync import exitcodes
from custsync.cli.common import echo_json, fail, handle_errors, operator_name, plural, runtime
from custsync.cli.dlq_options import (
    age,
    bad_input,
    confirm,
    filter_options,
    need_yes,
    table,
    when,
    when_and_age,
)
from custsync.dlq.entry import DeadLetter, customer_label
from custsync.dlq.group_index import dlq_groups
from custsync.dlq.query import BadCursor, Filter, Page, Query
from custsync.dlq.stats import dlq_stats
from custsync.dlq.views import shown
from custsync.erasure import forget_customer
from custsync.state.audit import Audit


@click.group("dlq")
def dlq_group() -> None:
    """Inspect, replay, purge and export the dead-letter queue.

    Filters shared by list, replay, purge and export: --target, --reason, --customer,
    --status, --since/--until (30m, 2h, 1d or ISO-8601), --grep TEXT and --group ID.
    """


@dlq_group.command("list")
@filter_options
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--cursor", metavar="TOKEN", help="Start after the page that printed this token.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--show-payload", is_flag=True, help="Include each envelope, personal data too.")
@handle_errors
def list_command(
    flt: Filter, limit: int, cursor: str | None, as_json: bool, show_payload: bool
) -> None:
    """List entries, newest first, one page at a time (the next with --cursor)."""
    try:
        page = Query(runtime().dlq, flt).page(limit, cursor)
    except BadCursor as exc:
        bad_input(f"--{exc}")
    if as_json:
        for entry in page.entries:
            row = entry.summary(reveal=show_payload)
            if show_payload:
                row["envelope"] = entry.envelope
            echo_json(row)
        if page.next_cursor:
            click.echo(f"next page: --cursor {page.next_cursor}", err=True)
        return
    if not page.entries:
        click.echo("the DLQ is empty" if flt.is_empty() and not cursor else "no entries match")
        return
    lines = table(page.entries, reveal=show_payload)
    click.echo(lines[0])
    for entry, line in zip(page.entries, lines[1:], strict=True):
        click.echo(line)
        if show_payload:
            click.echo(f"    envelope: {json.dumps(entry.envelope, default=str)}")
    click.echo(_page_footer(page), err=True)


def _page_footer(page: Page) -> str:
    count = plural(len(page.entries), "entry", "entries")
    of = f" of {page.total}" if page.total is not None else ""
    more = f"; next page: --cursor {page.next_cursor}" if page.next_cursor else ""
    return f"{count}{of}{more}"


@dlq_group.command("show")
@click.argument("some_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="As JSON (an array if several entries).")
@click.option("--show-payload", is_flag=True, help="Show personal data and partner bodies.")
@handle_errors
def show_command(some_id: str, as_json: bool, show_payload: bool) -> None:
    """Everything about one entry (by entry id), or every entry of one event id."""
    store = runtime().dlq
    entries = store.load(store.resolve(some_id))
    if not entries:
        replayed = " (it was replayed and has not failed again)" if store.past(some_id) else ""
        fail(f"no DLQ entry with event id or entry id {some_id!r}{replayed}", exitcodes.FAILURE)
    if as_json:
        data = [shown(entry, show_payload) for entry in entries]
        echo_json(data[0] if len(data) == 1 else data)
        return
    if len(entries) > 1:
        click.echo(f"{len(entries)} entries with event id {some_id}, newest first\n")
    for n, entry in enumerate(entries):
        if n:
            click.echo()
        _show_one(entry, show_payload)


def _show_one(entry: DeadLetter, show_payload: bool) -> None:
    data = shown(entry, show_payload)
    status = f" (HTTP {entry.status})" if entry.status else ""
    rows = [
        ("entry id", entry.entry_id),
        ("event id", entry.event_id or "- (none valid)"),
        ("target", entry.target or "-"),
        ("customer", data.get("customer_id", data.get("customer")) or "-"),
        ("reason", f"{entry.reason}{status}"),
        ("error", f"{entry.error_class}: {entry.error}"),
        ("attempts", str(entry.attempts)),
        ("replays", str(entry.replays)),
        ("first seen", when_and_age(entry.first_seen_at)),
        ("dead-lettered", when_and_age(entry.dead_lettered_at)),
        ("correlation id", entry.correlation_id or "-"),
    ]
    for field, errors in (entry.field_errors or {}).items():
        rows.append(("field error", f"{field}: {' '.join(errors)}"))
    rows.append(("response", str(data["response"] or "-")))
    if entry.raw is not None:
        rows.append(("raw message", str(data["raw"])))
        rows.append(("headers", json.dumps(data["headers"], default=str)))
    for label, value in rows:
        click.echo(f"{label:>15}  {value}")
    envelope = json.dumps(data["envelope"], indent=2, ensure_ascii=False, default=str)
    click.echo(f"{'envelope':>15}  " + envelope.replace("\n", "\n" + " " * 17))
    click.echo(f"{'history':>15}  {len(entry.history) or 'none'}")
    for n, past in enumerate(data["history"], start=1):
        click.echo(f"{n:>15}. {_history_line(past)}")


def _history_line(past: dict[str, Any]) -> str:
    status = f" HTTP {past['status']}" if past.get("status") else ""
    line = (
        f"{when(past.get('dead_lettered_at'))} {past.get('reason')}{status}, "
        f"attempts {past.get('attempts')}, replays {past.get('replays')}: {past.get('error')}"
    )
    if past.get("replayed_at"):
        line += f"; replayed {when(past['replayed_at'])}"
    return line


@dlq_group.command("stats")
@click.option("--json", "as_json", is_flag=True, help="As one JSON object.")
@handle_errors
def stats_command(as_json: bool) -> None:
    """Counts by target and reason, the oldest entry, and how fast entries arrive."""
    stats = dlq_stats(runtime().dlq)
    if as_json:
        echo_json(stats)
        return
    cap = f"soft cap {stats['max_entries']:,}"
    if stats["over_cap"]:
        cap += ": OVER CAP, replay or purge"
    days = stats["retention_s"] / 86_400
    click.echo(f"{plural(stats['total'], 'entry', 'entries')} ({cap}; kept {days:g} days)")
    if not stats["total"]:
        return
    for name in ("oldest", "newest"):
        point = stats[name]
        click.echo(
            f"{name}: {when(point['dead_lettered_at'])} "
            f"({age(point['dead_lettered_at'])} ago) {point['entry_id']}"
        )
    arrivals = stats["arrivals"]
    click.echo(f"arrived: {arrivals['last_hour']} in the last hour, {arrivals['last_24h']} in 24 h")
    click.echo(f"{'TARGET':<10}{'REASON':<12}{'COUNT':>9}")
    for target, reasons in stats["by_target"].items():
        for reason, count in reasons.items():
            click.echo(f"{target:<10}{reason:<12}{count:>9,}")
    if stats["by_status"]:
        statuses = ", ".join(f"{s}: {n:,}" for s, n in stats["by_status"].items())
        click.echo(f"by HTTP status: {statuses}")


@dlq_group.command("groups")
@filter_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@handle_errors
def groups_command(flt: Filter, as_json: bool) -> None:
    """Failures grouped by target, reason, HTTP status and normalised error, largest first;
    list, replay or purge exactly one group with --group ID."""
    found = dlq_groups(runtime().dlq, flt)
    if as_json:
        for g in found:
            echo_json(g.as_dict())
        return
    if not found:
        click.echo("the DLQ is empty" if flt.is_empty() else "no entries match")
        return
    click.echo(
        f"{'COUNT':>7}  {'TARGET':<8}{'REASON':<11}{'HTTP':>5}  {'LAST SEEN':<10}{'GROUP':<18}ERROR"
    )
    for g in found:
        status = str(g.status or "-")
        click.echo(
            f"{g.count:>7,}  {g.target:<8}{g.reason:<11}{status:>5}  "
            f"{age(g.last_seen) + ' ago':<10}{g.id:<18}{g.error}"
        )


@dlq_group.command("forget")
@click.argument("customer_id")
@click.option("--yes", is_flag=True, help="Do not ask (required without a terminal).")
@handle_errors
def forget_command(customer_id: str, yes: bool) -> None:
    """Forget one customer (an erasure request): their payloads leave the DLQ, the retry
    sets, the journal and the queue; one audit line remains, with their pseudonym."""
    need_yes(yes)
    confirm(f"Forget customer {customer_label(customer_id)} everywhere custsync keeps data?", yes)
    rt = runtime()
    done = forget_customer(rt, customer_id)
    Audit(rt.redis, rt.keys).record(
        operator_name(), "forget", {"customer": customer_id}, done.total
    )
    parts = ", ".join(f"{where} {n}" for where, n in done.counts.items())
    click.echo(f"forgot {customer_label(customer_id)}: {parts}")


def _register() -> None:
    from custsync.cli.dlq_edit_cmd import edit_command
    from custsync.cli.dlq_purge_cmd import export_command, purge_command
    from custsync.cli.dlq_replay_cmd import replay_command

    for command in (replay_command, purge_command, export_command, edit_command):
        dlq_group.add_command(command)


_register()
