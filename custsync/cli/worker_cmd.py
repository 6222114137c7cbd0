"""``custsync worker``: a Celery worker with custsync's defaults."""

from __future__ import annotations

import click

from custsync.cli.common import handle_errors, runtime
from custsync.state.keys import QUEUE


@click.command("worker")
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1, 512),
    help="Threads (default CUSTSYNC_CONCURRENCY, 8).",
)
@click.option(
    "--pool",
    type=click.Choice(["threads", "prefork", "solo"]),
    default="threads",
    show_default=True,
)
@click.option("-n", "--hostname", help="Worker node name (default custsync@HOST).")
@click.option("-l", "--loglevel", default=None, help="Celery's own log level (default WARNING).")
@handle_errors
def worker_command(
    concurrency: int | None, pool: str, hostname: str | None, loglevel: str | None
) -> None:
    """Run a worker: late acks, prefetch 1, the retry poller, soft shutdown."""
    rt = runtime()
    _ = rt.redis_url  # start the embedded Redis (or fail) before Celery prints its banner
    from custsync.worker import app

    argv = [
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency or rt.settings.concurrency}",
        f"--queues={QUEUE}",
        f"--loglevel={loglevel or 'WARNING'}",
        "--without-mingle",
        "--without-gossip",
    ]
    argv.append(f"--hostname={hostname or 'custsync@%h'}")
    app.worker_main(argv)
