"""Rotating a webhook secret without a restart: the sources file is rewritten (as a mounted
Secret is), ``custsync serve`` gets SIGHUP, and its new gunicorn workers take the new secret;
a broken file on a later HUP is one log line and the server keeps the secrets it had. Every
line the server writes is JSON, gunicorn's own included."""

from __future__ import annotations

import base64
import json
import signal
from pathlib import Path

import redis
import requests

from custsync.demo.webhook import signed_headers
from custsync.embedded.server import EphemeralRedis
from custsync.sandbox import Sandbox
from tests.conftest import custsync_env, db_url, wait_for
from tests.events import MINTED_EXAMPLE, envelope, new_id
from tests.serving import serving

DB = 28
OLD = "whsec_" + base64.b64encode(b"the-secret-before-the-rotation!!").decode()
NEW = "whsec_" + base64.b64encode(b"the-secret-after-the-rotation!!!").decode()


def _sources(path: Path, *secrets: str) -> None:
    path.write_text(json.dumps({"crm": {"webhook_secrets": list(secrets)}}))


def _status(url: str, secret: str) -> int:
    cid = new_id("HUP")
    body = json.dumps(envelope("minted", cid, {**MINTED_EXAMPLE, "external_id": cid})).encode()
    headers = signed_headers(body, secret)
    return requests.post(f"{url}/v1/events", data=body, headers=headers, timeout=10).status_code


def test_sighup_rereads_the_sources_and_a_broken_file_keeps_them(
    redis_server: EphemeralRedis, sandbox: Sandbox, tmp_path: Path
) -> None:
    redis.Redis.from_url(db_url(redis_server, DB)).flushdb()
    sources = tmp_path / "sources.json"
    _sources(sources, OLD)
    env = custsync_env(redis_server, sandbox, DB, CUSTSYNC_INGEST_SOURCES_FILE=str(sources))
    log = tmp_path / "serve.log"
    with serving(env, log, workers=2) as (url, proc):
        assert (_status(url, OLD), _status(url, NEW)) == (202, 401)

        _sources(sources, NEW, OLD)  # the rotation: both for a while
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _status(url, NEW) == 202, timeout_s=30, interval_s=0.3)
        assert _status(url, OLD) == 202

        _sources(sources, NEW)  # the old one retired
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _status(url, OLD) == 401, timeout_s=30, interval_s=0.3)

        sources.write_text('{"crm": {"webhook_secrets": ')  # a half-written file
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "settings kept as they were" in log.read_text(), timeout_s=30)
        assert proc.poll() is None
        assert [_status(url, NEW) for _ in range(6)] == [202] * 6  # every worker, new or old

    text = log.read_text()
    line = next(t for t in text.splitlines() if "settings kept as they were" in t)
    assert "CUSTSYNC_INGEST_SOURCES" in line
    assert NEW.removeprefix("whsec_") not in text and OLD.removeprefix("whsec_") not in text
    records = [json.loads(t) for t in text.splitlines()]  # gunicorn's own lines too
    assert any(r.get("logger") == "gunicorn.error" and "hup" in r["msg"] for r in records)
