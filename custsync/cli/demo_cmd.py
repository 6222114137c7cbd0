"""``custsync demo``."""

from __future__ import annotations

import sys

import click

from custsync.cli.common import handle_errors


@click.command("demo")
@click.option("--customers", type=click.IntRange(10, 100_000), default=300, show_default=True)
@click.option("--timeout", "timeout_s", type=click.FloatRange(10), default=180.0, show_default=True)
@handle_errors
def demo_command(customers: int, timeout_s: float) -> None:
    """Run the whole loop locally: embedded Redis, sandbox, a worker, a flaky partner."""
    from custsync.demo.run import run_demo

    sys.exit(run_demo(customers, timeout_s))
