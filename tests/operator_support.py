"""An operators file with one operator (alice) and one viewer (bob), written by the real
``custsync operators add``, and the operator API's app on it: fixtures for API tests
(import ``quiet_fixture`` and ``client_fixture``; tests ask for ``quiet`` and ``client``)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from custsync.embedded.server import EphemeralRedis
from custsync.http.app import create_app
from custsync.runtime import Runtime
from custsync.sandbox import Sandbox
from custsync.settings import load_settings
from tests.conftest import run_cli
from tests.dlq_support import Quiet

PASSWORDS = {"alice": "alice-long-password-1", "bob": "bob-long-password-22"}


@pytest.fixture(name="quiet")
def quiet_fixture(redis_server: EphemeralRedis, sandbox: Sandbox, tmp_path: Path) -> Quiet:
    q = Quiet(redis_server, sandbox, CUSTSYNC_OPERATORS_FILE=str(tmp_path / "operators.json"))
    for name, role in (("alice", "operator"), ("bob", "viewer")):
        password = PASSWORDS[name]
        added = run_cli(q.env, "operators", "add", name, "--role", role, stdin=f"{password}\n" * 2)
        assert added.returncode == 0, added.stderr
    return q


@pytest.fixture(name="client")
def client_fixture(quiet: Quiet) -> FlaskClient:
    return create_app(Runtime(load_settings(quiet.env))).test_client()


def basic(name: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{PASSWORDS[name]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
