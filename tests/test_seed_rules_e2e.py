"""The partners' documents, rule by rule: what custsync accepts the partner applies, and what
custsync refuses the partner refuses too. Through `publish`, a real worker and the sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.auth import HTTPDigestAuth

from custsync import publish
from custsync.producer import EventValidationError
from custsync.runtime import Runtime
from custsync.sandbox import Sandbox, SandboxClient
from tests.conftest import (
    MINTED_PASSWORD,
    MINTED_USER,
    VENDOR_PASSWORD,
    VENDOR_USER,
    WorkerProcess,
    run_cli,
    wait_for,
)
from tests.events import envelope, minted_customer, new_id, vendor_customer
from tests.rules import SEED_RULES, Rule, accepted_changes, refused_changes

NOT_STORED = {"minted": {"external_id"}, "vendor": {"updateCode", "sendMail"}}


class Partner:
    """Calls the sandbox partner directly, as the partner's document says, bypassing custsync."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.trust_env = False
        token = self.session.post(
            f"{url}/vendor/auth/token",
            json={"username": VENDOR_USER, "password": VENDOR_PASSWORD},
            timeout=10,
        ).json()["accessToken"]
        self.bearer = {"Authorization": f"Bearer {token}"}

    def send(self, target: str, customer_id: str, body: dict[str, Any]) -> requests.Response:
        if target == "minted":
            return self.session.patch(
                f"{self.url}/partner/customer/{customer_id}",
                json=body,
                headers={"x-client-id": "web", "api-version": "2"},
                auth=HTTPDigestAuth(MINTED_USER, MINTED_PASSWORD),
                timeout=10,
            )
        return self.session.put(
            f"{self.url}/vendor/customer/{customer_id}", json=body, headers=self.bearer, timeout=10
        )


@pytest.fixture(scope="module")
def partner(sandbox: Sandbox) -> Iterator[Partner]:
    direct = Partner(sandbox.url)
    yield direct
    direct.session.close()


def new_customer(client: SandboxClient, target: str) -> str:
    return minted_customer(client) if target == "minted" else vendor_customer(client)


def terminal(worker: WorkerProcess, event_id: str) -> dict[str, Any] | None:
    for line in worker.outcomes(event_id):
        if line["outcome"] in ("applied", "dead_lettered", "superseded"):
            return line
    return None


def expected_record(before: dict[str, Any], target: str, changes: dict[str, Any]) -> dict[str, Any]:
    """A partial update: the sent fields replace, every other field stays as it was."""
    return {**before, **{k: v for k, v in changes.items() if k not in NOT_STORED[target]}}


def test_every_accepted_event_is_applied_and_the_partner_ends_with_it(
    worker: WorkerProcess, sandbox_client: SandboxClient
) -> None:
    cases: list[tuple[Rule, str, dict[str, Any], dict[str, Any]]] = []
    for rule in SEED_RULES:
        cid = new_customer(sandbox_client, rule.target)
        before = sandbox_client.get_customer(rule.target, cid)
        assert before is not None
        env = envelope(rule.target, cid, accepted_changes(rule, cid))
        publish(env)
        cases.append((rule, cid, env, before))

    for rule, cid, env, before in cases:
        line = wait_for(lambda env=env: terminal(worker, env["event_id"]), timeout_s=60)
        assert line["outcome"] == "applied", (rule.id, line)
        after = sandbox_client.get_customer(rule.target, cid)
        assert after == expected_record(before, rule.target, env["changes"]), rule.id


def test_every_refused_event_is_refused_by_publish_and_by_the_partner(
    runtime: Runtime, sandbox_client: SandboxClient, partner: Partner
) -> None:
    for rule in SEED_RULES:
        cid = new_customer(sandbox_client, rule.target)
        before = sandbox_client.get_customer(rule.target, cid)
        changes = refused_changes(rule, cid)
        env = envelope(rule.target, cid, changes)
        with pytest.raises(EventValidationError) as info:
            publish(env)
        named = f"changes.{rule.field}"
        assert any(k == named or k.startswith(f"{named}.") for k in info.value.messages), rule.id
        assert runtime.dlq.get(env["event_id"]) is None  # refused at the door, not enqueued

        answer = partner.send(rule.target, cid, changes)
        assert 400 <= answer.status_code < 500, (rule.id, answer.status_code, answer.text)
        assert sandbox_client.get_customer(rule.target, cid) == before, rule.id


@pytest.mark.parametrize("corporate", [False, True], ids=["individual", "corporate"])
def test_the_issue_example_published_with_the_cli_changes_only_the_sent_field(
    worker: WorkerProcess,
    worker_env: dict[str, str],
    sandbox_client: SandboxClient,
    tmp_path: Path,
    corporate: bool,
) -> None:
    code = new_id("P")
    kind = (
        {"isCompany": True, "companyName": "Acme A.Ş.", "taxNumber": "1234567890",
         "taxOffice": "Silifke"}
        if corporate
        else {"isCompany": False, "firstName": "Ada", "lastName": "Kaya", "tckn": "11111111110"}
    )  # fmt: skip
    record = {"code": code, "erpCode": f"E{code}", "email": "old@example.com", **kind}
    sandbox_client.put_customer("vendor", code, record)
    changes = {"code": code, "erpCode": f"E{code}", "email": "new.address@example.com"}
    if corporate:
        changes["isCompany"] = True
    env = envelope("vendor", code, changes)
    path = tmp_path / "events.ndjson"
    path.write_text(json.dumps(env) + "\n")

    proc = run_cli(worker_env, "publish", str(path))

    assert proc.returncode == 0, proc.stderr
    line = wait_for(lambda: terminal(worker, env["event_id"]), timeout_s=30)
    assert line["outcome"] == "applied"
    call = next(r for r in sandbox_client.requests(key=env["event_id"]) if r["status"] == 200)
    assert call["body"] == changes  # no identity field the event did not carry
    assert sandbox_client.get_customer("vendor", code) == {**record, **changes}


def test_making_an_individual_corporate_alone_is_the_partners_422_in_the_dlq(
    worker: WorkerProcess, runtime: Runtime, sandbox_client: SandboxClient
) -> None:
    code = vendor_customer(sandbox_client)
    before = sandbox_client.get_customer("vendor", code)
    assert before is not None
    env = envelope("vendor", code, {"code": code, "erpCode": f"erp-{code}", "isCompany": True})
    publish(env)  # valid as an event: only the partner knows the record it merges into

    line = wait_for(lambda: terminal(worker, env["event_id"]), timeout_s=30)
    assert (line["outcome"], line["reason"], line["status"]) == ("dead_lettered", "rejected", 422)
    entry = runtime.dlq.get(env["event_id"])
    assert entry is not None and entry.reason == "rejected" and entry.status == 422
    assert "companyName" in entry.error and "taxNumber" in entry.error  # the partner's words
    assert before["tckn"] not in json.dumps(entry.summary()) + json.dumps(line)
    assert sandbox_client.get_customer("vendor", code) == before
