"""The demo's last step: a CRM's signed webhook through ``custsync serve``, applied.

The server runs as a user runs it (gunicorn in a subprocess) with one source whose secret
the demo knows; the request is signed by the standardwebhooks library as a CRM signs it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import requests
from standardwebhooks import Webhook

from custsync.sandbox import SandboxClient

SOURCE = "demo-crm"
SECRET = "whsec_" + base64.b64encode(b"custsync-demo-webhook-secret-32b").decode()
CUSTOMER = "501"  # the vendor document's own example customer, seeded by the demo
ADDRESS = "Webhook Sokak 1, Silifke"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _until(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def _ready(url: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        return True  # exited: stop waiting, the caller says so
    try:
        return requests.get(f"{url}/readyz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def signed_headers(
    body: bytes, secret: str = SECRET, msg_id: str | None = None, at: datetime | None = None
) -> dict[str, str]:
    """What a CRM sends with a Standard Webhooks delivery (also the tests' and bench's signer)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
    }


def _event() -> dict[str, Any]:
    return {
        "event_id": f"demo-webhook-{uuid.uuid4().hex[:12]}",
        "target": "vendor",
        "customer_id": CUSTOMER,
        "occurred_at": datetime.now(UTC).isoformat(),  # newer than the stream: applied
        "changes": {"code": CUSTOMER, "erpCode": CUSTOMER, "address": ADDRESS},
    }


def webhook_step(env: dict[str, str], box: SandboxClient, log_path: Path) -> bool:
    """Start ``custsync serve``, POST one signed event, wait for the partner to have it."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CUSTSYNC_")}
    sources = json.dumps({SOURCE: {"webhook_secrets": [SECRET]}})
    args = ["serve", "--bind", f"127.0.0.1:{port}", "--threads", "2"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "custsync.cli", *args],
            env={**clean, **env, "CUSTSYNC_INGEST_SOURCES": sources},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        if not _until(lambda: _ready(url, proc), 30) or proc.poll() is not None:
            click.echo(f"  custsync serve did not become ready; see {log_path}")
            return False
        body = json.dumps(_event()).encode()
        answer = requests.post(
            f"{url}/v1/events", data=body, headers=signed_headers(body), timeout=10
        )
        click.echo(
            f"  POST {url}/v1/events  source {SOURCE}, Standard Webhooks signature"
            f"  → {answer.status_code} {answer.text.strip()}"
        )
        if answer.status_code != 202:
            return False

        def applied() -> bool:
            record = box.get_customer("vendor", CUSTOMER) or {}
            return record.get("address") == ADDRESS

        if not _until(applied, 30):
            click.echo("  the webhook's event did not reach the partner in 30 s")
            return False
        click.echo(f"  applied at the partner: vendor customer {CUSTOMER} has the new address")
        return True
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
