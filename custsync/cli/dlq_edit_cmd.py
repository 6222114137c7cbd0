"""``custsync dlq edit``: correct a dead-lettered event and send it as a new event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from custsync import exitcodes
from custsync.cli.common import fail, handle_errors, operator_name, runtime
from custsync.cli.dlq_options import confirm
from custsync.dlq.edit import EditError, audit_scope, prepare, send, typed_value
from custsync.dlq.entry import DeadLetter
from custsync.state.audit import Audit


@click.command("edit")
@click.argument("some_id")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Set one field of the changes (repeat for more). Non-text fields take JSON: 42, true.",
)
@click.option("--unset", multiple=True, metavar="FIELD", help="Leave this field out.")
@click.option(
    "--changes-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A JSON object to use as the whole changes (then --set/--unset apply to it).",
)
@click.option("--dry-run", is_flag=True, help="Validate and show the diff; send nothing.")
@click.option("--yes", is_flag=True, help="Do not ask (required without a terminal).")
@handle_errors
def edit_command(
    some_id: str,
    assignments: tuple[str, ...],
    unset: tuple[str, ...],
    changes_file: Path | None,
    dry_run: bool,
    yes: bool,
) -> None:
    """Edit one entry's changes and send them as a new event (a new event id: the partner may
    keep the old one's answer); the original leaves the DLQ in the same step. The diff goes to
    the audit with personal values masked."""
    rt = runtime()
    entry, raw = _one_entry(rt, some_id)
    changes = _changes(entry, changes_file)
    for item in assignments:
        name, sep, text = item.partition("=")
        if not sep or not name:
            fail(f"--set {item!r}: expected FIELD=VALUE", exitcodes.INVALID_INPUT)
        changes[name] = typed_value(entry.target or "", name, text)
    for name in unset:
        changes.pop(name, None)
    try:
        edit = prepare(rt, entry, changes)
    except EditError as exc:
        fail(f"{entry.label}: {exc}", exitcodes.INVALID_INPUT)
    for name, (before, after) in edit.diff().items():
        click.echo(f"{name}: {json.dumps(before)} -> {json.dumps(after)}")
    if dry_run:
        click.echo("dry run: nothing sent")
        return
    confirm(f"Send this edit of {entry.label} as a new event?", yes)
    if not send(rt, _producer(rt), edit, raw):
        fail(f"{entry.label} changed or left the DLQ meanwhile; nothing sent", exitcodes.FAILURE)
    Audit(rt.redis, rt.keys).record(operator_name(), "edit", audit_scope(edit), 1)
    click.echo(f"sent as new event {edit.event_id} (replaces {entry.label})")


def _one_entry(rt: Any, some_id: str) -> tuple[DeadLetter, str]:
    ids = rt.dlq.resolve(some_id)
    if not ids:
        fail(f"no DLQ entry with id {some_id}", exitcodes.FAILURE)
    if len(ids) > 1:
        fail(
            f"{some_id} names {len(ids)} entries: give one entry id (custsync dlq show)",
            exitcodes.INVALID_INPUT,
        )
    (raw,) = rt.dlq.get_raw(ids)
    if raw is None:
        fail(f"{some_id} left the DLQ meanwhile", exitcodes.FAILURE)
    return DeadLetter.from_json(raw), raw


def _changes(entry: DeadLetter, path: Path | None) -> dict[str, Any]:
    if path is None:
        current = entry.envelope.get("changes") if isinstance(entry.envelope, dict) else None
        return dict(current) if isinstance(current, dict) else {}
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        fail(f"--changes-file {path}: not JSON ({type(exc).__name__})", exitcodes.INVALID_INPUT)
    if not isinstance(loaded, dict):
        fail(f"--changes-file {path}: must hold a JSON object", exitcodes.INVALID_INPUT)
    return loaded


def _producer(rt: Any) -> Any:
    from custsync.celery_app import producer_app

    return producer_app(rt)
