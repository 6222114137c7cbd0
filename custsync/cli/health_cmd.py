"""``custsync health``: a probe for Docker HEALTHCHECK and Kubernetes exec probes.

Never starts anything: an embedded Redis that is not running is unhealthy, not started.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import click
import redis

from custsync import exitcodes
from custsync.cli.common import fail, handle_errors, runtime
from custsync.embedded.server import mask_url
from custsync.redis_connect import connect
from custsync.redis_errors import cause
from custsync.runtime import Runtime


def _redis_url(rt: Runtime) -> str:
    if rt.settings.redis_url:
        return rt.settings.redis_url
    from custsync.embedded.server import EmbeddedRedis, default_data_dir

    status = EmbeddedRedis(rt.settings.data_dir or default_data_dir()).status()
    if not status.running or not status.url:
        fail("unhealthy: the embedded Redis is not running", exitcodes.UNAVAILABLE)
    return status.url.rsplit("/", 1)[0] + f"/{rt.settings.embedded_db}"


def check_redis(rt: Runtime, timeout_s: float) -> float:
    """Milliseconds a PING took; exits 4 with one line when Redis does not answer."""
    url = _redis_url(rt)
    client = connect(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    started = time.perf_counter()
    try:
        client.ping()
    except redis.RedisError as exc:
        fail(
            f"unhealthy: cannot reach Redis at {mask_url(url)}: {cause(exc, timeout_s)}",
            exitcodes.UNAVAILABLE,
        )
    finally:
        client.close()
    return (time.perf_counter() - started) * 1000


def ping_worker(rt: Runtime, node: str | None, timeout_s: float) -> str:
    """The name of the worker that answered: ``node``, or any on this host."""
    from custsync.worker import producer_app

    app = producer_app(rt)
    where = node or f"*@{socket.gethostname()}"
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout_s)
            # Matched on the worker side, so only the wanted node answers; limit=1 returns then.
            options: dict[str, Any] = (
                {"destination": [node]} if node else {"pattern": where, "matcher": "glob"}
            )
            replies = app.control.ping(timeout=timeout_s, limit=1, connection=conn, **options)
    except Exception as exc:  # any transport's failure, in one line
        broker = rt.settings.broker_url or _redis_url(rt)
        fail(
            f"unhealthy: cannot reach the broker at {mask_url(broker)} ({type(exc).__name__})",
            exitcodes.UNAVAILABLE,
        )
    for reply in replies or []:
        for name, answer in reply.items():
            if isinstance(answer, dict) and answer.get("ok") == "pong":
                return str(name)
    fail(f"unhealthy: no worker {where} answered a ping within {timeout_s:g}s", exitcodes.FAILURE)


@click.command("health")
@click.option(
    "--worker",
    "check_worker",
    is_flag=True,
    help="Also require a worker on this host to answer a ping (liveness of a worker container).",
)
@click.option("--node", help="Ping this worker node name instead (implies --worker).")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(0.1, 60),
    default=2.0,
    show_default=True,
    help="Seconds to wait for each answer.",
)
@handle_errors
def health_command(check_worker: bool, node: str | None, timeout_s: float) -> None:
    """Exit 0 if Redis answers (and with --worker, a worker answers a ping); otherwise one
    line on stderr and exit 4 (unreachable) or 1 (no worker answered)."""
    rt = runtime()
    took_ms = check_redis(rt, timeout_s)
    line = f"ok: Redis answered in {took_ms:.1f} ms"
    if check_worker or node:
        line += f"; worker {ping_worker(rt, node, timeout_s)} answered"
    click.echo(line)
