"""``custsync sandbox``: run local stand-ins for both partner APIs."""

from __future__ import annotations

import json
import signal
from types import FrameType
from typing import Any, NoReturn

import click

from custsync import exitcodes
from custsync.sandbox.faults import FaultError, check_faults
from custsync.sandbox.server import (
    DEFAULT_MINTED_CREDENTIALS,
    DEFAULT_VENDOR_CREDENTIALS,
    Sandbox,
)

TARGETS = ("minted", "vendor")
SHOWN = 10  # customers listed per target at start


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def _value(text: str) -> Any:
    """Numbers as numbers (``0.2``, ``503``); anything else (``reset``) as text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_fault_specs(specs: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``TARGET:KEY=VALUE`` specs as per-target fault settings; FaultError names a bad one."""
    faults: dict[str, dict[str, Any]] = {}
    for spec in specs:
        target, colon, setting = spec.partition(":")
        key, equals, value = setting.partition("=")
        if not (colon and equals and key):
            raise FaultError(f"--fault {spec!r} is not TARGET:KEY=VALUE")
        if target not in TARGETS:
            raise FaultError(f"--fault {spec!r}: unknown target {target!r} (minted, vendor)")
        try:
            faults.setdefault(target, {}).update(check_faults(target, {key: _value(value)}))
        except FaultError as exc:
            raise FaultError(f"--fault {spec!r}: {exc}") from None
    return faults


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM (docker stop) stops as cleanly as Ctrl-C


def _print_customers(sandbox: Sandbox) -> None:
    """The customers an event can update (examples/first-steps.ndjson uses the seeded ones)."""
    click.echo("customers it knows (PUT /_sandbox/customers/TARGET/ID adds one):")
    for target in TARGETS:
        ids = sorted(sandbox.store.table(target))
        shown = ", ".join(ids[:SHOWN]) + (f" and {len(ids) - SHOWN} more" if ids[SHOWN:] else "")
        click.echo(f"  {target:<7} {shown or 'none (--no-seed)'}")


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8800,
    show_default=True,
    help="Port to listen on; 0 picks a free one.",
)
@click.option(
    "--no-seed", is_flag=True, help="Start with no customers (default: the seeds' examples)."
)
@click.option("--minted-username", default=DEFAULT_MINTED_CREDENTIALS[0], show_default=True)
@click.option("--minted-password", default=DEFAULT_MINTED_CREDENTIALS[1], show_default=True)
@click.option("--vendor-username", default=DEFAULT_VENDOR_CREDENTIALS[0], show_default=True)
@click.option("--vendor-password", default=DEFAULT_VENDOR_CREDENTIALS[1], show_default=True)
@click.option(
    "--token-ttl",
    "token_ttl_s",
    type=click.FloatRange(min=0, min_open=True),
    default=3600.0,
    show_default=True,
    help="Lifetime in seconds of vendor access tokens.",
)
@click.option(
    "--fault",
    "fault_specs",
    multiple=True,
    metavar="TARGET:KEY=VALUE",
    help="Inject a fault, e.g. minted:error_rate=0.2 or vendor:outage_s=30; repeatable.",
)
@click.option("--verbose", is_flag=True, help="Log every request to stderr.")
def sandbox_command(
    host: str,
    port: int,
    no_seed: bool,
    minted_username: str,
    minted_password: str,
    vendor_username: str,
    vendor_password: str,
    token_ttl_s: float,
    fault_specs: tuple[str, ...],
    verbose: bool,
) -> None:
    """Serve both partner APIs locally, faithful to the seeds, with fault injection.

    Control API under /_sandbox/ (faults, scripts, customers, requests, stats).
    """
    try:
        faults = parse_fault_specs(fault_specs)
    except FaultError as exc:
        _fail(str(exc), exitcodes.INVALID_INPUT)
    sandbox = Sandbox(
        host,
        port,
        minted_credentials=(minted_username, minted_password),
        vendor_credentials=(vendor_username, vendor_password),
        token_ttl_s=token_ttl_s,
        seed=not no_seed,
        faults=faults,
        verbose=verbose,
    )
    try:
        sandbox.listen()
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", exitcodes.FAILURE)
    click.echo(f"custsync sandbox listening on {sandbox.url} (Ctrl-C to stop)")
    for name, value in sandbox.env().items():
        click.echo(f"{name}={value}")
    _print_customers(sandbox)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        sandbox.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
        signal.signal(signal.SIGTERM, previous)
    click.echo("sandbox stopped", err=True)
