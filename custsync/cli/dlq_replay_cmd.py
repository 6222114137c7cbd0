"""``custsync dlq replay``: put dead-lettered events back on the queue."""

from __future__ import annotations

import sys
from typing import Any

import click

from custsync import exitcodes
from custsync.cli.common import echo_json, handle_errors, plural, runtime
from custsync.cli.dlq_options import (
    bad_input,
    confirm,
    filter_options,
    need_yes,
    require_selection,
)
from custsync.dlq.entry import customer_label
from custsync.dlq.query import Filter
from custsync.dlq.replay import Plan, Replayer, Summary, plan_moves, plan_replay
from custsync.runtime import Runtime

SHOWN = 20  # ids listed per category in text mode before the rest are only counted


def parse_rate(text: str | None) -> float | None:
    if text is None:
        return None
    value = text.removesuffix("/s")
    try:
        rate = float(value)
    except ValueError:
        bad_input(f"--rate {text!r} is not a number of events per second (e.g. 50 or 50/s)")
    if not 0 < rate <= 100_000:
        bad_input(f"--rate {text!r} must be above 0 and at most 100000 events per second")
    return rate


@click.command("replay")
@click.argument("event_ids", nargs=-1)
@filter_options
@click.option("--all", "select_all", is_flag=True, help="Replay every entry.")
@click.option("--dry-run", is_flag=True, help="Show what would happen; change nothing.")
@click.option("--rate", metavar="N", help="At most N events per second (N or N/s).")
@click.option("--force", is_flag=True, help="Replay even events a newer change superseded.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask; required without a terminal.")
@click.option("--json", "as_json", is_flag=True, help="Plan or summary as one JSON object.")
@handle_errors
def replay_command(
    event_ids: tuple[str, ...],
    flt: Filter,
    select_all: bool,
    dry_run: bool,
    rate: str | None,
    force: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Replay entries by EVENT_ID..., by filter, or --all.

    Each event keeps its event id (the partner sees the same Idempotency-Key) and gets a
    fresh retry budget. Entries move back onto the queue in batches, one Redis script per
    batch, and the worker judges each on arrival as it judges every event: one still
    invalid comes back to the DLQ with today's errors, one a newer applied change superseded
    ends as superseded (--force sends it anyway). --dry-run validates and predicts both.
    An entry leaves the DLQ only once its event is on the queue, so an
    interrupted replay is finished by running it again; with the Redis broker two replays
    never send one event twice (another broker: at least once, and the applied ledger drops
    the repeat). Exit code 1 if an id named is not in the DLQ (the others are still
    replayed); 2 for bad options or a missing --yes without a terminal.
    """
    per_s = parse_rate(rate)
    require_selection(event_ids, flt, select_all, "replay")
    if not dry_run:
        need_yes(yes)
    rt = runtime()
    if dry_run:
        plan = plan_replay(rt, flt, event_ids, force)
        _print_plan(plan, as_json)
    else:
        plan = plan_moves(rt, flt, event_ids)  # the worker validates: no second time here
        if not plan.replay:
            _print_summary(Summary(), plan, as_json)
        else:
            _replay(rt, plan, per_s, force, yes, as_json)
    if plan.missing:
        sys.exit(exitcodes.FAILURE)


def _replay(
    rt: Runtime, plan: Plan, per_s: float | None, force: bool, yes: bool, as_json: bool
) -> None:
    if not yes:
        _print_plan(plan, as_json=False, err=True)
        click.echo("  (the worker validates each on arrival; --dry-run predicts it)", err=True)
    pace = f" at {per_s:g}/s" if per_s else ""
    confirm(f"Replay {plural(len(plan.replay), 'event')}{pace}?", yes)
    summary = _run(rt, plan, per_s, force, show_bar=sys.stderr.isatty() and not as_json)
    _print_summary(summary, plan, as_json)


def _run(rt: Runtime, plan: Plan, rate: float | None, force: bool, show_bar: bool) -> Summary:
    from custsync.worker import producer_app

    replayer = Replayer(rt, producer_app(rt), force=force)
    items = plan.replay
    try:
        if not show_bar:
            return replayer.run(items, rate)
        with click.progressbar(length=len(items), label="replaying", file=sys.stderr) as bar:
            return replayer.run(items, rate, progress=bar.update)
    except KeyboardInterrupt:
        done = replayer.summary.total
        click.echo(
            f"interrupted after {done} of {len(items)}; run the same command again to replay "
            "the rest (nothing is lost or sent twice)",
            err=True,
        )
        sys.exit(exitcodes.INTERRUPTED)


def _plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "dry_run": True,
        "replay": len(plan.replay),
        "groups": [{"target": t, "reason": r, "count": n} for t, r, n in plan.groups()],
        "superseded": [i.event_id for i in plan.superseded],
        "still_invalid": [{"event_id": i.event_id, "error": e} for i, e in plan.invalid],
        "missing": plan.missing,
    }


def _print_plan(plan: Plan, as_json: bool, err: bool = False) -> None:
    if as_json:
        echo_json(_plan_json(plan))
        return

    def out(line: str) -> None:
        click.echo(line, err=err)

    out(f"would replay {plural(len(plan.replay), 'event')}")
    for target, reason, count in plan.groups():
        out(f"  {target:<10}{reason:<12}{count:>8}")
    if plan.superseded:
        out(f"would skip {len(plan.superseded)} superseded by a newer applied change")
        out("  (a replay sends them and the worker drops them as superseded; --force applies")
        out("  them anyway, `dlq purge ID...` removes them)")
        for item in plan.superseded[:SHOWN]:
            out(f"  {item.event_id}  {item.target}  {customer_label(item.customer_id)}")
    if plan.invalid:
        out(f"{len(plan.invalid)} still invalid under today's schemas (a replay brings them back")
        out("  to the DLQ with today's errors)")
        for item, error in plan.invalid[:SHOWN]:
            out(f"  {item.event_id}  {error}")
    if plan.missing:
        out(f"{len(plan.missing)} not in the DLQ: {' '.join(plan.missing[:SHOWN])}")


def _print_summary(summary: Summary, plan: Plan, as_json: bool) -> None:
    if as_json:
        echo_json(
            {
                "replayed": summary.total,
                "groups": [
                    {"target": t, "reason": r, "count": n}
                    for (t, r), n in sorted(summary.replayed.items())
                ],
                "superseded": summary.superseded,
                "still_invalid": summary.invalid + [i.event_id for i, _ in plan.invalid],
                "gone": summary.gone,
                "changed": summary.changed,
                "missing": plan.missing,
            }
        )
        return
    click.echo(f"replayed {plural(summary.total, 'event')}")
    for (target, reason), count in sorted(summary.replayed.items()):
        click.echo(f"  {target:<10}{reason:<12}{count:>8}")
    left = {
        "skipped as superseded (still in the DLQ)": len(plan.superseded) + len(summary.superseded),
        "still invalid (still in the DLQ)": len(plan.invalid) + len(summary.invalid),
        "already gone (another replay or a purge took them)": len(summary.gone),
        "failed again meanwhile (run again to replay them)": len(summary.changed),
        "not in the DLQ": len(plan.missing),
    }
    for label, count in left.items():
        if count:
            click.echo(f"{count} {label}")
