"""``custsync operators add``: who may use the operator API, and with which role."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from custsync import exitcodes
from custsync.cli.common import fail, handle_errors, runtime

MIN_PASSWORD = 12


@click.group("operators")
def operators_group() -> None:
    """Users and API keys of the operator API (CUSTSYNC_OPERATORS_FILE)."""


def _password() -> str:
    """Twice, from the terminal; or two lines on stdin when there is none."""
    if sys.stdin.isatty():
        password: str = click.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        lines = sys.stdin.read().splitlines()
        if len(lines) < 2 or lines[0] != lines[1]:
            fail("stdin must hold the password twice, on two lines", exitcodes.INVALID_INPUT)
        password = lines[0]
    if len(password) < MIN_PASSWORD:
        fail(f"the password needs at least {MIN_PASSWORD} characters", exitcodes.INVALID_INPUT)
    return password


@operators_group.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "operator"]), required=True)
@click.option("--api-key", is_flag=True, help="Make an API key (printed once) instead.")
@handle_errors
def add_command(name: str, role: str, api_key: bool) -> None:
    """Add or replace NAME: a password (stored as its hash) or, with --api-key, a key."""
    from custsync.http.operators import add_api_key, add_user

    path = runtime().settings.operators_file
    if not path:
        fail("set CUSTSYNC_OPERATORS_FILE to the file to write", exitcodes.CONFIG_ERROR)
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        fail(f"{name!r}: letters, digits, '-', '_' and '.' only", exitcodes.INVALID_INPUT)
    if api_key:
        key = add_api_key(Path(path), name, role)
        click.echo(key)
        click.echo(f"API key for {name} ({role}); shown once, only its hash is kept", err=True)
        return
    add_user(Path(path), name, role, _password())
    click.echo(f"added {name} ({role}) to {path}", err=True)
