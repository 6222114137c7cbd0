"""``custsync serve``: the HTTP ingest API under gunicorn."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from custsync.cli.common import handle_errors, runtime


@click.command("serve")
@click.option("--bind", help="HOST:PORT (default CUSTSYNC_HTTP_BIND, 127.0.0.1:8080).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True)
@handle_errors
def serve_command(bind: str | None, workers: int, threads: int) -> None:
    """Serve POST /v1/events (Standard Webhooks or API keys per source), /healthz, /readyz,
    /metrics and /v1/openapi.json. Stateless: run as many replicas as needed."""
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Each gunicorn worker counts in files here; /metrics sums them (prometheus-client's
        # multiprocess mode, chosen when prometheus_client is first imported: below).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="custsync-metrics-")
    elif "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # given: it may hold a previous run's counts
        counts = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        counts.mkdir(parents=True, exist_ok=True)
        for stale in counts.glob("*.db"):
            stale.unlink()
    from custsync.http.server import Server, check_exposure
    from custsync.http.sources import parse_sources
    from custsync.logs import configure_logging

    rt = runtime()
    configure_logging(rt.settings.log_format, rt.settings.log_level)
    where = bind or rt.settings.http_bind
    parse_sources(rt.settings.ingest_sources)  # a bad source is one line before gunicorn starts
    check_exposure(rt, where)
    Server(rt, where, workers, threads).run()
