"""``custsync dlq purge`` and ``custsync dlq export``."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO

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
from custsync.dlq.entry import DeadLetter
from custsync.dlq.purge import purge
from custsync.dlq.query import Filter, Query, select
from custsync.dlq.views import shown


@click.command("purge")
@click.argument("event_ids", nargs=-1)
@filter_options
@click.option("--all", "select_all", is_flag=True, help="Purge every entry.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask; required without a terminal.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per removed entry.")
@handle_errors
def purge_command(
    event_ids: tuple[str, ...], flt: Filter, select_all: bool, yes: bool, as_json: bool
) -> None:
    """Delete entries for good, by EVENT_ID..., by filter, or --all; prints what it removed.

    `dlq export` first if they may be needed again. Exit code 1 if an id named is not in the
    DLQ (the others are still purged); 2 for bad options or a missing --yes without a
    terminal.
    """
    require_selection(event_ids, flt, select_all, "purge")
    need_yes(yes)
    store = runtime().dlq
    entries, missing = select(store, flt, event_ids)
    ids: list[str] = []
    groups: Counter[tuple[str, str]] = Counter()
    for entry in entries:
        ids.append(entry.entry_id)
        groups[(entry.target or "-", entry.reason)] += 1
    for event_id in missing:
        click.echo(f"not in the DLQ: {event_id}", err=True)
    if not ids:
        click.echo("nothing to purge", err=True)
        if missing:
            sys.exit(exitcodes.FAILURE)
        return
    counts = ", ".join(f"{t}/{r} {n}" for (t, r), n in sorted(groups.items()))
    confirm(f"Delete {plural(len(ids), 'DLQ entry', 'DLQ entries')} for good ({counts})?", yes)
    removed = purge(store, ids, flt)
    for entry in removed:
        if as_json:
            echo_json(entry.summary())
        else:
            click.echo(f"removed {entry.label}  {entry.target or '-'}  {entry.reason}")
    click.echo(f"purged {plural(len(removed), 'entry', 'entries')}", err=True)
    if missing:
        sys.exit(exitcodes.FAILURE)


@click.command("export")
@click.argument("event_ids", nargs=-1)
@filter_options
@click.option("--entries", "full", is_flag=True, help="Whole entries (with errors and history).")
@click.option(
    "--show-payload",
    is_flag=True,
    help="Personal data as it is: bare envelopes `custsync publish` takes (or whole entries).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE (created private, mode 600) instead of stdout.",
)
@handle_errors
def export_command(
    event_ids: tuple[str, ...], flt: Filter, full: bool, show_payload: bool, output: Path | None
) -> None:
    """Write entries as NDJSON, oldest first; every entry unless ids or filters say.

    By default each line is an entry as `dlq show --json` shows it: personal data masked,
    customers as pseudonyms, safe to attach to a ticket (and never taken by `publish`).
    With --show-payload: bare envelopes ready for `custsync publish` (whole entries with
    --entries) holding the events' PERSONAL DATA (names, national ids, emails, phones)
    unmasked: keep that file private and delete it when done.
    """
    store = runtime().dlq
    chosen: Iterable[DeadLetter]
    if event_ids:
        chosen, missing = select(store, flt, event_ids)
        for event_id in missing:
            click.echo(f"not in the DLQ: {event_id}", err=True)
    else:
        chosen = Query(store, flt).oldest_first()
    mode = ("entries" if full else "envelopes") if show_payload else "masked"
    if output is None:
        counts = _write(chosen, mode, sys.stdout)
    else:
        try:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            bad_input(f"cannot write {output}: {exc.strerror}")
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            counts = _write(chosen, mode, stream)
    where = f" to {output}" if output else ""
    written, skipped = counts
    what = {
        "entries": ("entry", "entries"),
        "envelopes": ("envelope", "envelopes"),
        "masked": ("masked entry", "masked entries"),
    }[mode]
    click.echo(f"exported {plural(written, *what)}{where}", err=True)
    if mode == "masked" and written:
        click.echo("personal data masked; --show-payload exports it (to republish)", err=True)
    if skipped:
        click.echo(
            f"skipped {skipped} malformed messages without an envelope (--entries has them)",
            err=True,
        )


def _write(entries: Iterable[DeadLetter], mode: str, stream: IO[str]) -> tuple[int, int]:
    """(written, skipped): a malformed message with no envelope has nothing to publish."""
    written = skipped = 0
    for entry in entries:
        if mode == "envelopes" and entry.envelope is None:
            skipped += 1
            continue
        if mode == "masked":
            line = json.dumps(shown(entry, False), ensure_ascii=False, default=str)
        elif mode == "entries":
            line = entry.to_json()
        else:
            line = json.dumps(entry.envelope, ensure_ascii=False)
        stream.write(line + "\n")
        written += 1
    stream.flush()
    return written, skipped
