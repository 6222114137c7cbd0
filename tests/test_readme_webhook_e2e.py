"""README's signed-webhook first step, run as written: its ``CUSTSYNC_INGEST_SOURCES``, its
shell snippet (openssl + curl, a non-Python signer) against a real ``custsync serve``, a real
worker and the sandbox with its default customers; then the demo's own webhook step."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from custsync.demo.webhook import ADDRESS, webhook_step
from custsync.embedded.server import EphemeralRedis
from custsync.sandbox import Sandbox, SandboxClient
from tests.conftest import WorkerPool, custsync_env, db_url, wait_for
from tests.serving import serving
from tests.tools import debian_tool

ROOT = Path(__file__).resolve().parent.parent
README_URL = "http://127.0.0.1:8080"
EVENT = json.loads((ROOT / "examples" / "webhook-event.json").read_text())
DB = 27


def _sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def _readme_sources() -> str:
    (line,) = [b for b in "\n".join(_sh_blocks()).splitlines() if "CUSTSYNC_INGEST_SOURCES=" in b]
    return line.split("=", 1)[1].strip("'")


def _readme_curl() -> str:
    (block,) = [b for b in _sh_blocks() if "webhook-signature" in b]
    assert README_URL in block
    return block


@dataclass
class Served:
    url: str
    box: SandboxClient
    pool: WorkerPool
    env: dict[str, str]

    def run_snippet(self, script: str) -> str:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script.replace(README_URL, self.url)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def served(
    redis_server: EphemeralRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    debian_tool("openssl", "openssl")
    debian_tool("curl", "curl")
    tmp = tmp_path_factory.mktemp("readme-webhook")
    redis.Redis.from_url(db_url(redis_server, DB)).flushdb()
    with Sandbox(port=0) as box:  # its default customers and credentials, as README runs it
        env = custsync_env(redis_server, box, DB, **box.env())
        env["CUSTSYNC_INGEST_SOURCES"] = _readme_sources()
        pool = WorkerPool(env, tmp, 1).start()
        try:
            with serving(env, tmp / "serve.log") as (url, _):
                yield Served(url, SandboxClient(box.url), pool, env)
        finally:
            pool.stop()


def _address(served: Served) -> str | None:
    return (served.box.get_customer("vendor", "501") or {}).get("address")


def test_readme_curl_with_a_wrong_secret_gets_401(served: Served) -> None:
    wrong = _readme_curl().replace("secret=whsec_", "secret=whsec_AAAA", 1)
    answer = json.loads(served.run_snippet(wrong))
    assert answer["error"] == "unauthorized", answer
    assert _address(served) != EVENT["changes"]["address"]


def test_readme_curl_is_accepted_and_applied(served: Served) -> None:
    answer = json.loads(served.run_snippet(_readme_curl()))
    assert answer == {"accepted": 1, "event_ids": [EVENT["event_id"]]}
    worker = served.pool.workers[0]
    wait_for(lambda: any(o["outcome"] == "applied" for o in worker.outcomes(EVENT["event_id"])))
    assert _address(served) == EVENT["changes"]["address"]


def test_the_demo_webhook_step_applies_its_event(served: Served, tmp_path: Path) -> None:
    env = {k: v for k, v in served.env.items() if k != "CUSTSYNC_INGEST_SOURCES"}
    assert webhook_step(env, served.box, tmp_path / "serve.log")
    assert _address(served) == ADDRESS
