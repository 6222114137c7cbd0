"""A third partner is one installed module: the tiny package in tests/plugins/custsync-acme,
installed with pip into a directory of its own, is validated, applied against a stand-in,
dead-lettered, and every field it did not declare public is masked."""

from __future__ import annotations

import importlib
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from custsync.delivery import Delivery
from custsync.dlq.views import shown_envelope
from custsync.observability.scrub import handling, scrub_text
from custsync.pipeline import Pipeline
from custsync.runtime import Runtime
from custsync.settings import load_settings
from custsync.targets import REGISTRY
from tests.events import envelope

PLUGIN = Path(__file__).parent / "plugins" / "custsync-acme"
CANARY_ID, CANARY_NAME = "99988877766", "Zeynep Canary"


class AcmeStandIn(BaseHTTPRequestHandler):
    """Acme's API: customers whose id starts with OK exist; others get a 422 that echoes."""

    received: list[dict[str, Any]] = []

    def do_PUT(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        customer = self.path.rsplit("/", 1)[-1]
        AcmeStandIn.received.append({"customer": customer, "body": body})
        status, answer = (
            (200, body)
            if customer.startswith("OK")
            else (
                422,
                {"message": f"national_id {body.get('national_id')} of {body.get('name')} invalid"},
            )
        )
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def acme_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    site = tmp_path_factory.mktemp("acme-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(PLUGIN)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    REGISTRY._loaded = None  # type: ignore[attr-defined]  # discover the new entry point
    yield
    sys.path.remove(str(site))
    REGISTRY._loaded = None  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def acme_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), AcmeStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_third_partner_installed_as_a_plugin_is_validated_applied_and_masked(
    acme_installed: None,
    acme_url: str,
    direct_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert "acme" in REGISTRY and set(REGISTRY) >= {"minted", "vendor"}
    rt = Runtime(load_settings({**direct_env, "CUSTSYNC_ACME_BASE_URL": acme_url}))
    pipeline = Pipeline(rt)
    changes = {"name": CANARY_NAME, "national_id": CANARY_ID, "tier": "gold", "opted_in": True}
    caplog.set_level(logging.INFO)

    bad_tier = envelope("acme", "OK-1", {**changes, "tier": "platinum"})
    invalid = pipeline.process(bad_tier, Delivery(first_seen_at=1.0))
    applied = pipeline.process(envelope("acme", "OK-2", changes), Delivery(first_seen_at=1.0))
    refused_env = envelope("acme", "NO-3", changes)
    refused = pipeline.process(refused_env, Delivery(first_seen_at=1.0))
    for result in (invalid, applied, refused):
        result.log()

    assert (invalid.outcome.value, invalid.reason) == ("dead_lettered", "invalid")
    assert "changes.tier" in (rt.dlq.get(bad_tier["event_id"]).field_errors or {})
    assert applied.outcome.value == "applied"
    assert AcmeStandIn.received[0] == {"customer": "OK-2", "body": changes}
    entry = rt.dlq.get(refused_env["event_id"])
    assert (refused.reason, entry.reason, entry.status) == ("rejected", "rejected", 422)
    # Every field Acme did not declare public is masked: in the error, the log, the DLQ view.
    shown = shown_envelope(entry.envelope, show_payload=False)
    assert shown["changes"] == {
        "name": "***",
        "national_id": "***",
        "tier": "gold",
        "opted_in": True,
    }
    logged = caplog.text + json.dumps([r.__dict__.get("custsync") for r in caplog.records])
    for surface in (entry.error, logged, json.dumps(shown)):
        assert CANARY_ID not in surface and CANARY_NAME not in surface
    with handling(refused_env):  # what the log filter and Sentry's before_send run
        echoed = scrub_text(f"acme said: {CANARY_NAME} / {CANARY_ID} / tier gold")
    assert echoed == "acme said: *** / *** / tier gold"
