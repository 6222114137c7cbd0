"""The operator API on a real Redis: roles from the operators file that ``custsync operators
add`` writes, the DLQ with filters and a cursor, groups, replay and purge, status, audit."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from custsync import exitcodes
from custsync.http.app import create_app
from custsync.privacy import mask_id
from custsync.runtime import Runtime
from custsync.settings import load_settings
from tests.conftest import run_cli
from tests.dlq_support import Quiet, entry, json_lines, queued_count
from tests.operator_support import PASSWORDS, basic, client_fixture, quiet_fixture  # noqa: F401

ALICE, BOB = "alice", "bob"


def test_operators_add_stores_hashes_only_in_a_private_file(quiet: Quiet, tmp_path: Path) -> None:
    path = tmp_path / "operators.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert all(p not in text for p in PASSWORDS.values())
    keyed = run_cli(quiet.env, "operators", "add", "nightly", "--role", "viewer", "--api-key")
    key = keyed.stdout.strip()
    assert key.startswith("cso_") and key not in path.read_text()
    mismatch = run_cli(quiet.env, "operators", "add", "eve", "--role", "viewer", stdin="a\nb\n")
    assert mismatch.returncode == exitcodes.INVALID_INPUT and "twice" in mismatch.stderr
    assert "eve" not in json.loads(path.read_text())["users"]
    app = create_app(Runtime(load_settings(quiet.env))).test_client()
    assert app.get("/v1/status", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_no_or_wrong_credentials_get_401(client: FlaskClient) -> None:
    bare = client.get("/v1/dlq")
    assert bare.status_code == 401 and "Basic" in bare.headers["WWW-Authenticate"]
    wrong = base64.b64encode(b"alice:not-her-password").decode()
    assert client.get("/v1/dlq", headers={"Authorization": f"Basic {wrong}"}).status_code == 401


def _seed(quiet: Quiet, n: int = 5) -> list[Any]:
    entries = [entry(customer_id=f"C-{i}", age_s=100.0 - i) for i in range(n)]
    entries.append(entry("vendor", "rejected", status=422, error="vendor answered 422: bad"))
    quiet.rt.dlq.add_many(entries)
    return entries


def test_a_viewer_reads_masked_and_cannot_act(quiet: Quiet, client: FlaskClient) -> None:
    entries = _seed(quiet)
    listed = client.get("/v1/dlq?reason=not_found&limit=2", headers=basic(BOB)).get_json()
    assert [row["event_id"] for row in listed["entries"]] == [e.event_id for e in entries[4:2:-1]]
    assert listed["entries"][0]["customer"] == mask_id("C-4")
    assert "C-4" not in json.dumps(listed)
    rest = client.get(
        f"/v1/dlq?reason=not_found&cursor={listed['next_cursor']}", headers=basic(BOB)
    )
    assert len(rest.get_json()["entries"]) == 3 and rest.get_json()["next_cursor"] is None
    one = client.get(f"/v1/dlq/{entries[0].event_id}", headers=basic(BOB)).get_json()
    (shown,) = one["entries"]
    assert shown["envelope"]["changes"]["identity_number"] == "***"
    for forbidden in (
        client.get(f"/v1/dlq/{entries[0].event_id}?reveal=true", headers=basic(BOB)),
        client.post("/v1/dlq/replay", json={"all": True}, headers=basic(BOB)),
        client.post("/v1/dlq/purge", json={"ids": [entries[0].event_id]}, headers=basic(BOB)),
    ):
        assert forbidden.status_code == 403
    assert quiet.rt.dlq.count() == len(entries)


def test_an_operator_reveals_replays_and_purges_and_each_is_audited(
    quiet: Quiet, client: FlaskClient
) -> None:
    entries = _seed(quiet)
    revealed = client.get(f"/v1/dlq/{entries[0].event_id}?reveal=true", headers=basic(ALICE))
    assert revealed.get_json()["entries"][0]["customer_id"] == "C-0"
    groups = client.get("/v1/dlq/groups", headers=basic(ALICE)).get_json()["groups"]
    assert [(g["target"], g["reason"], g["count"]) for g in groups] == [
        ("minted", "not_found", 5),
        ("vendor", "rejected", 1),
    ]
    dry = client.post(
        "/v1/dlq/replay",
        json={"filter": {"reason": "not_found"}, "dry_run": True},
        headers=basic(ALICE),
    ).get_json()
    assert (dry["dry_run"], dry["replay"]) == (True, 5)
    assert queued_count(quiet.raw) == 0
    done = client.post(
        "/v1/dlq/replay", json={"filter": {"reason": "not_found"}}, headers=basic(ALICE)
    ).get_json()
    assert done["replayed"] == 5 and queued_count(quiet.raw) == 5
    purged = client.post(
        "/v1/dlq/purge", json={"ids": [entries[-1].event_id, "no-such"]}, headers=basic(ALICE)
    ).get_json()
    assert purged == {"purged": 1, "missing": ["no-such"]}
    assert quiet.rt.dlq.count() == 0
    nothing = client.post("/v1/dlq/purge", json={}, headers=basic(ALICE))
    assert nothing.status_code == 422  # no ids, no filter, no all: nothing is assumed
    trail = client.get("/v1/audit", headers=basic(BOB)).get_json()["entries"]
    assert [(a["who"], a["action"], a["count"]) for a in trail] == [
        ("alice", "purge", 1),
        ("alice", "replay", 5),
        ("alice", "reveal", 1),
    ]
    assert "C-0" not in json.dumps(trail)
    cli_audit = run_cli(quiet.env, "audit")
    assert "alice" in cli_audit.stdout and "replay" in cli_audit.stdout


def test_status_and_bad_filters(quiet: Quiet, client: FlaskClient) -> None:
    _seed(quiet, 2)
    state = client.get("/v1/status", headers=basic(BOB)).get_json()
    assert state["dlq_total"] == 3 and set(state["targets"]) == {"minted", "vendor"}
    bad = client.get("/v1/dlq?reason=nonsense", headers=basic(BOB))
    assert bad.status_code == 422
    assert "reason" in bad.get_json()["errors"]["query"]


def test_dlq_groups_cli(quiet: Quiet) -> None:
    _seed(quiet, 3)
    text = run_cli(quiet.env, "dlq", "groups").stdout
    assert text.splitlines()[1].split()[:5] == ["3", "minted", "not_found", "404", "1m"] or (
        text.splitlines()[1].split()[:4] == ["3", "minted", "not_found", "404"]
    )
    rows = json_lines(run_cli(quiet.env, "dlq", "groups", "--json").stdout)
    assert [(r["reason"], r["count"]) for r in rows] == [("not_found", 3), ("rejected", 1)]
