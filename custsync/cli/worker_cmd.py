"""``custsync worker``: a Celery worker with custsync's defaults."""

from __future__ import annotations

import click

from custsync.cli.common import fail, handle_errors, runtime
from custsync.state.keys import all_queues, partner_queue
from custsync.targets import REGISTRY


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
@click.option(
    "--targets",
    default=None,
    metavar="NAME[,NAME…]",
    help="Consume only these partners' queues (custsync.NAME). Default: every partner's and "
    "the public queue custsync, whose events are forwarded to their partner's queue.",
)
@handle_errors
def worker_command(
    concurrency: int | None,
    pool: str,
    hostname: str | None,
    loglevel: str | None,
    targets: str | None,
) -> None:
    """Run a worker: late acks, prefetch 1, the retry poller, soft shutdown."""
    rt = runtime()
    queues = _queues(targets)
    _ = rt.redis_url  # start the embedded Redis (or fail) before Celery prints its banner
    from custsync.worker import app

    argv = [
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency or rt.settings.concurrency}",
        f"--queues={','.join(queues)}",
        f"--loglevel={loglevel or 'WARNING'}",
        "--without-mingle",
        "--without-gossip",
    ]
    argv.append(f"--hostname={hostname or 'custsync@%h'}")
    app.worker_main(argv)


def _queues(targets: str | None) -> list[str]:
    if targets is None:
        return all_queues(REGISTRY)
    names = [t.strip() for t in targets.split(",") if t.strip()]
    unknown = [n for n in names if n not in REGISTRY]
    if unknown or not names:
        known = ", ".join(sorted(REGISTRY))
        fail(f"--targets: unknown partner {unknown[0] if unknown else '(none)'}; known: {known}", 2)
    return [partner_queue(n) for n in names]
