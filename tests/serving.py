"""``custsync serve`` as a subprocess, started as a user starts it, for the HTTP tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.conftest import wait_for
from tests.operations_run import free_port


@contextmanager
def serving(
    env: dict[str, str], log: Path, workers: int = 1, threads: int = 4
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The server's URL and process once it answers /readyz (Redis reachable); stopped after."""
    bind = f"127.0.0.1:{free_port()}"
    args = ["serve", "--bind", bind, "--threads", str(threads), "--workers", str(workers)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "custsync.cli", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=out,
        )
    url = f"http://{bind}"
    try:
        wait_for(lambda: _ready(url, proc), timeout_s=30, interval_s=0.2)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(30)


def _ready(url: str, proc: subprocess.Popen[bytes]) -> bool:
    assert proc.poll() is None, "custsync serve exited early"
    try:
        return requests.get(f"{url}/readyz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False
