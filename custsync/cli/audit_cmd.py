"""``custsync audit``: every operator action, newest first."""

from __future__ import annotations

import click

from custsync.cli.common import echo_json, handle_errors, runtime
from custsync.cli.dlq_options import when
from custsync.state.audit import Audit


@click.command("audit")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@handle_errors
def audit_command(limit: int, as_json: bool) -> None:
    """Who did what, when, and to how many (replays, purges, reveals)."""
    rt = runtime()
    entries = Audit(rt.redis, rt.keys).newest(limit)
    if as_json:
        for entry in entries:
            echo_json(entry)
        return
    if not entries:
        click.echo("no operator action recorded yet")
        return
    for e in entries:
        click.echo(
            f"{when(e['at'])}  {e['who']:<12} {e['action']:<8} {e['count']:>6}  {e['scope']}"
        )
