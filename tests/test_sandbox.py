"""The sandbox partner APIs, over real HTTP, as custsync's client will meet them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from requests.auth import HTTPDigestAuth

from custsync.cli.sandbox_cmd import sandbox_command
from custsync.sandbox import Sandbox, SandboxClient, SandboxError
from tests.events import MINTED_EXAMPLE, VENDOR_EXAMPLE

MINTED_AUTH = ("custsync", "minted-sandbox-secret")
VENDOR_AUTH = {"username": "custsync", "password": "vendor-sandbox-secret"}
MINTED_ID = "MTD0018232"
MINTED_HEADERS = {"api-version": "2", "x-client-id": "web", "Accept-Language": "tr"}
DROP = object()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(port=0) as sb:
        yield sb


@pytest.fixture(scope="module")
def control(sandbox: Sandbox) -> Iterator[SandboxClient]:
    with SandboxClient(sandbox.url) as client:
        yield client


@pytest.fixture(autouse=True)
def _fresh_sandbox(control: SandboxClient) -> None:
    control.reset()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


@pytest.fixture
def minted(sandbox: Sandbox) -> Iterator[Callable[..., requests.Response]]:
    """PATCH a minted customer through one keep-alive, digest-authenticated session."""
    session = requests.Session()
    session.trust_env = False
    session.auth = HTTPDigestAuth(*MINTED_AUTH)

    def patch(
        customer_id: str = MINTED_ID,
        body: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        return session.patch(
            f"{sandbox.url}/partner/customer/{customer_id}",
            json=MINTED_EXAMPLE if body is None else body,
            headers=MINTED_HEADERS if headers is None else headers,
            timeout=kwargs.pop("timeout", 10),
            **kwargs,
        )

    yield patch
    session.close()


def vendor_token(http: requests.Session, sandbox: Sandbox) -> str:
    response = http.post(f"{sandbox.url}/vendor/auth/token", json=VENDOR_AUTH, timeout=10)
    assert response.status_code == 200, response.text
    token: str = response.json()["accessToken"]
    return token


@pytest.fixture
def vendor(http: requests.Session, sandbox: Sandbox) -> Callable[..., requests.Response]:
    """PUT a vendor customer with a fresh token (or the one given)."""
    token = vendor_token(http, sandbox)

    def put(
        code: str, body: Any, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        sent = {"Authorization": f"Bearer {kwargs.pop('token', token)}", **(headers or {})}
        return http.put(
            f"{sandbox.url}/vendor/customer/{code}", json=body, headers=sent, timeout=10, **kwargs
        )

    return put


def with_changes(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    body = dict(base)
    for key, value in changes.items():
        if value is DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def wait_for_record(control: SandboxClient, **filters: Any) -> list[dict[str, Any]]:
    """Records matching ``filters`` once a delayed handler has finished (at most 10 s)."""
    status = filters.pop("status")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [r for r in control.requests(**filters) if r["status"] == status]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {status} recorded for {filters}")


# --- minted: digest authentication -------------------------------------------------------


def test_digest_handshake_reuses_nonce_over_keep_alive(
    minted: Callable[..., requests.Response], control: SandboxClient
) -> None:
    responses = [minted() for _ in range(4)]
    assert [r.status_code for r in responses] == [200] * 4
    # One challenge only: later requests reuse its nonce with increasing nc.
    records = control.requests("minted")
    assert [r["status"] for r in records] == [401, 200, 200, 200, 200]
    assert [r["headers"]["auth_scheme"] for r in records] == [None] + ["Digest"] * 4


def test_digest_challenge_format(http: requests.Session, sandbox: Sandbox) -> None:
    response = http.patch(
        f"{sandbox.url}/partner/customer/{MINTED_ID}", json=MINTED_EXAMPLE, headers=MINTED_HEADERS
    )
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Digest realm="minted-sandbox", nonce="')
    assert 'qop="auth"' in challenge and "algorithm=MD5" in challenge and "opaque=" in challenge
    garbage = http.patch(
        f"{sandbox.url}/partner/customer/{MINTED_ID}",
        json=MINTED_EXAMPLE,
        headers={**MINTED_HEADERS, "Authorization": 'Digest username="custsync", response="00"'},
    )
    assert garbage.status_code == 401


def test_digest_wrong_password_is_refused(
    http: requests.Session, sandbox: Sandbox, control: SandboxClient
) -> None:
    http.auth = HTTPDigestAuth("custsync", "not-the-password")
    response = http.patch(
        f"{sandbox.url}/partner/customer/{MINTED_ID}", json=MINTED_EXAMPLE, headers=MINTED_HEADERS
    )
    assert response.status_code == 401
    assert "200" not in control.stats()["minted"]["by_status"]


def test_digest_replayed_nonce_count_is_refused(
    minted: Callable[..., requests.Response], http: requests.Session, sandbox: Sandbox
) -> None:
    first = minted()
    assert first.status_code == 200
    replay_headers = {**MINTED_HEADERS, "Authorization": first.request.headers["Authorization"]}
    replay = http.patch(
        f"{sandbox.url}/partner/customer/{MINTED_ID}", json=MINTED_EXAMPLE, headers=replay_headers
    )
    assert replay.status_code == 401
    assert minted().status_code == 200  # the honest client carries on with the next nc


def test_digest_stale_nonce_gets_stale_challenge() -> None:
    with Sandbox(port=0, nonce_lifetime_s=0.3) as sb, requests.Session() as session:
        session.trust_env = False
        session.auth = HTTPDigestAuth(*MINTED_AUTH)
        url = f"{sb.url}/partner/customer/{MINTED_ID}"
        assert session.patch(url, json=MINTED_EXAMPLE, headers=MINTED_HEADERS).status_code == 200
        time.sleep(0.5)
        again = session.patch(url, json=MINTED_EXAMPLE, headers=MINTED_HEADERS)
        assert again.status_code == 200  # requests retried on the stale challenge
        assert [r.status_code for r in again.history] == [401]
        assert "stale=true" in again.history[0].headers["WWW-Authenticate"]


# --- minted: headers, body rules, answers ---------------------------------------------


def test_minted_seed_example_is_accepted(minted: Callable[..., requests.Response]) -> None:
    response = minted()
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["code"] == 0 and body["message"] == ""
    assert body["data"]["external_id"] == MINTED_ID  # the body's external_id is ignored
    assert body["data"]["fullname"] == "John Due"
    assert body["data"]["middlename"] == ""


@pytest.mark.parametrize(
    ("changes", "field", "echo"),
    [
        ({"firstname": DROP}, "firstname", False),
        ({"firstname": "Jo"}, "firstname", True),
        ({"firstname": "J" * 41}, "firstname", True),
        ({"firstname": 123}, "firstname", False),
        ({"lastname": DROP}, "lastname", False),
        ({"lastname": "Du"}, "lastname", True),
        ({"middlename": "Al"}, "middlename", True),
        ({"middlename": "M" * 41}, "middlename", True),
        ({"email": "x@"}, "email", True),
        ({"email": "john.due@example"}, "email", True),
        ({"phone": DROP}, "phone", False),
        ({"phone": ""}, "phone", False),
        ({"gender": "X"}, "gender", True),
        ({"identity_number": DROP}, "identity_number", False),
        ({"identity_number": "12"}, "identity_number", True),
        ({"birthdate": "1970-02-30"}, "birthdate", True),
        ({"birthdate": "31-01-1970"}, "birthdate", True),
        ({"birthdate": "1970-1-31"}, "birthdate", True),
        ({"nickname": "Johnny"}, "nickname", False),
        ({"external_id": 5}, "external_id", False),
    ],
)
def test_minted_rule_rejected(
    minted: Callable[..., requests.Response], changes: dict[str, Any], field: str, echo: bool
) -> None:
    response = minted(body=with_changes(MINTED_EXAMPLE, changes))
    assert response.status_code == 422
    body = response.json()
    assert body["success"] is False and body["code"] == 422 and body["data"] is None
    assert list(body["errors"]) == [field]
    assert field in body["message"] and "\n" not in body["message"]
    if echo:
        assert f"'{changes[field]}'" in body["message"]


@pytest.mark.parametrize(
    "changes",
    [
        {"middlename": DROP},
        {"middlename": "Ann"},
        {"email": DROP, "gender": DROP, "birthdate": DROP, "external_id": DROP},
        {"gender": "F", "identity_number": "123"},
    ],
)
def test_minted_optional_fields(
    minted: Callable[..., requests.Response], changes: dict[str, Any]
) -> None:
    assert minted(body=with_changes(MINTED_EXAMPLE, changes)).status_code == 200


def test_minted_headers(minted: Callable[..., requests.Response]) -> None:
    assert (
        minted(headers={"x-client-id": "web"}).status_code == 200
    )  # api-version, language optional
    assert minted(headers={"x-client-id": ""}).status_code == 200  # the seed's curl sends it empty
    missing = minted(headers={"api-version": "2"})
    assert missing.status_code == 422
    assert list(missing.json()["errors"]) == ["x-client-id"]
    wrong_type = minted(
        body=None,
        data=json.dumps(MINTED_EXAMPLE),
        headers={**MINTED_HEADERS, "Content-Type": "text/plain"},
    )
    assert wrong_type.status_code == 415


def test_minted_unknown_customer(minted: Callable[..., requests.Response]) -> None:
    response = minted("MTD0000000")
    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "code": 404,
        "message": "Record Not Found",
        "data": None,
    }


def test_minted_merges_into_stored_record(
    minted: Callable[..., requests.Response], control: SandboxClient
) -> None:
    control.put_customer(
        "minted",
        "C-1",
        {
            "firstname": "Ann",
            "lastname": "Lee",
            "phone": "1",
            "identity_number": "999",
            "email": "ann@example.com",
        },
    )
    body = {
        "firstname": "Ann",
        "middlename": "Marie",
        "lastname": "Lee",
        "phone": "+9055",
        "identity_number": "999",
    }
    response = minted("C-1", body=body)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["fullname"] == "Ann Marie Lee" and data["external_id"] == "C-1"
    assert control.get_customer("minted", "C-1") == {
        **body,
        "external_id": "C-1",
        "email": "ann@example.com",
    }


# --- vendor ------------------------------------------------------------------------------


def test_vendor_token_flow(http: requests.Session, sandbox: Sandbox) -> None:
    url = f"{sandbox.url}/vendor/auth/token"
    issued = http.post(url, json=VENDOR_AUTH).json()
    assert (
        issued["tokenType"] == "Bearer"
        and issued["expiresIn"] == 3600
        and len(issued["accessToken"]) > 20
    )
    assert http.post(url, json={**VENDOR_AUTH, "password": "nope"}).status_code == 401
    assert http.post(url, json={"username": "custsync"}).status_code == 400
    customer = f"{sandbox.url}/vendor/customer/501"
    body = {"code": "501", "erpCode": "501"}
    assert (
        http.put(
            customer, json=body, headers={"Authorization": f"Bearer {issued['accessToken']}"}
        ).status_code
        == 200
    )
    for headers in (
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": issued["accessToken"]},
    ):
        refused = http.put(customer, json=body, headers=headers)
        assert refused.status_code == 401
        assert refused.json() == {"message": "token expired or invalid"}


def test_vendor_token_ttl_expires(
    http: requests.Session, sandbox: Sandbox, control: SandboxClient
) -> None:
    control.set_faults("vendor", token_ttl_s=0.2)
    issued = http.post(f"{sandbox.url}/vendor/auth/token", json=VENDOR_AUTH).json()
    assert issued["expiresIn"] == 0.2
    time.sleep(0.4)
    headers = {"Authorization": f"Bearer {issued['accessToken']}"}
    response = http.put(
        f"{sandbox.url}/vendor/customer/501",
        json={"code": "501", "erpCode": "501"},
        headers=headers,
    )
    assert response.status_code == 401


def test_vendor_expire_tokens_action(
    vendor: Callable[..., requests.Response], control: SandboxClient
) -> None:
    body = {"code": "501", "erpCode": "501"}
    assert vendor("501", body).status_code == 200
    assert control.expire_tokens() >= 1
    assert vendor("501", body).status_code == 401
    assert control.stats()["vendor"]["tokens_issued"] == 1


def test_vendor_seed_example_is_accepted(
    vendor: Callable[..., requests.Response], control: SandboxClient
) -> None:
    response = vendor("501", VENDOR_EXAMPLE)
    assert response.status_code == 200
    stored = control.get_customer("vendor", "501")
    assert response.json() == stored
    assert stored is not None and "sendMail" not in stored
    stats = control.stats()["vendor"]
    assert stats["emails_sent"] == 1 and stats["emails_sent_by_customer"] == {"501": 1}


def test_vendor_partial_update_keeps_unsent_fields(
    vendor: Callable[..., requests.Response], control: SandboxClient
) -> None:
    response = vendor("501", {"code": "501", "erpCode": "501", "mobile": "5551112233"})
    assert response.status_code == 200
    stored = control.get_customer("vendor", "501")
    expected = {k: v for k, v in VENDOR_EXAMPLE.items() if k != "sendMail"}
    assert stored == {**expected, "mobile": "5551112233"}
    assert control.stats()["vendor"]["emails_sent"] == 0


def test_vendor_corporate_rule_on_merged_record(
    vendor: Callable[..., requests.Response], control: SandboxClient
) -> None:
    refused = vendor("501", {"code": "501", "erpCode": "501", "isCompany": True})
    assert refused.status_code == 422
    assert set(refused.json()["errors"]) == {"companyName", "taxNumber"}  # taxOffice is stored
    assert "companyName" in refused.json()["message"]
    body = {
        "code": "501",
        "erpCode": "501",
        "isCompany": True,
        "companyName": "Acme",
        "taxNumber": "123",
    }
    assert vendor("501", body).status_code == 200
    stored = control.get_customer("vendor", "501")
    assert stored is not None and stored["taxOffice"] == "Silifke" and stored["isCompany"] is True


def test_vendor_individual_rule_on_merged_record(
    vendor: Callable[..., requests.Response], control: SandboxClient
) -> None:
    control.put_customer(
        "vendor", "777", {"erpCode": "777", "firstName": "Ada", "lastName": "Byron"}
    )
    refused = vendor("777", {"code": "777", "erpCode": "777", "email": "ada@example.com"})
    assert refused.status_code == 422
    assert set(refused.json()["errors"]) == {"tckn"}
    assert (
        vendor("777", {"code": "777", "erpCode": "777", "tckn": "11111111111"}).status_code == 200
    )


@pytest.mark.parametrize(
    ("changes", "field", "echo"),
    [
        ({"districtCode": "494"}, "districtCode", "'494'"),
        ({"districtCode": True}, "districtCode", "True"),
        ({"isCompany": "false"}, "isCompany", "'false'"),
        ({"sendMail": 1}, "sendMail", "1"),
        ({"customerRepresentativeIds": ["a", 1]}, "customerRepresentativeIds", "['a', 1]"),
        ({"customerRepresentativeIds": "a"}, "customerRepresentativeIds", "'a'"),
        ({"firstName": None}, "firstName", "None"),
        ({"nickname": "x"}, "nickname", None),
        ({"updateCode": "502"}, "updateCode", "'502'"),
    ],
)
def test_vendor_shape_rejected(
    vendor: Callable[..., requests.Response], changes: dict[str, Any], field: str, echo: str | None
) -> None:
    response = vendor("501", {"code": "501", "erpCode": "501", **changes})
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]
    assert field in response.json()["message"]
    if echo is not None:
        assert echo in response.json()["message"]


@pytest.mark.parametrize(
    "body", [{"code": "501"}, {"erpCode": "501"}, {"code": "", "erpCode": "501"}]
)
def test_vendor_code_and_erp_code_required(
    vendor: Callable[..., requests.Response], body: dict[str, Any]
) -> None:
    response = vendor("501", body)
    assert response.status_code == 422
    assert set(response.json()["errors"]) <= {"code", "erpCode"} and response.json()["errors"]


def test_vendor_update_code_matching_path_is_accepted(
    vendor: Callable[..., requests.Response], control: SandboxClient
) -> None:
    assert vendor("501", {"updateCode": "501", "code": "501", "erpCode": "501"}).status_code == 200
    stored = control.get_customer("vendor", "501")
    assert stored is not None and "updateCode" not in stored


def test_vendor_rename_and_conflict(
    vendor: Callable[..., requests.Response], control: SandboxClient
) -> None:
    renamed = vendor("501", {"code": "601", "erpCode": "501", "sendMail": True})
    assert renamed.status_code == 200 and renamed.json()["code"] == "601"
    assert control.get_customer("vendor", "501") is None
    moved = control.get_customer("vendor", "601")
    assert moved is not None and moved["firstName"] == "vendor" and moved["code"] == "601"
    assert control.stats()["vendor"]["emails_sent_by_customer"] == {"601": 1}
    control.put_customer(
        "vendor", "700", {"erpCode": "700", "firstName": "Other", "lastName": "One", "tckn": "1"}
    )
    conflict = vendor("601", {"code": "700", "erpCode": "501"})
    assert conflict.status_code == 409
    assert control.get_customer("vendor", "601") == moved
    other = control.get_customer("vendor", "700")
    assert other is not None and other["firstName"] == "Other"


def test_vendor_unknown_customer(vendor: Callable[..., requests.Response]) -> None:
    assert vendor("999", {"code": "999", "erpCode": "999"}).status_code == 404


def test_vendor_unknown_payment_set_and_currency(
    vendor: Callable[..., requests.Response], control: SandboxClient
) -> None:
    new_set = "11111111-2222-3333-4444-555555555555"
    body = {"code": "501", "erpCode": "501", "paymentSetId": new_set}
    refused = vendor("501", body)
    assert refused.status_code == 404
    assert refused.json()["message"] == f"paymentSetId '{new_set}' not defined"
    assert new_set in control.add_payment_sets([new_set])
    assert vendor("501", body).status_code == 200
    currency = vendor("501", {"code": "501", "erpCode": "501", "currencyCode": "XYZ"})
    assert currency.status_code == 404 and "XYZ" in currency.json()["message"]
    assert (
        vendor("501", {"code": "501", "erpCode": "501", "currencyCode": "EUR"}).status_code == 200
    )


def test_vendor_content_type(vendor: Callable[..., requests.Response]) -> None:
    response = vendor(
        "501",
        None,
        data=b'{"code": "501", "erpCode": "501"}',
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 415


# --- faults --------------------------------------------------------------------------------


def test_fault_error_rate_after_auth(
    minted: Callable[..., requests.Response], control: SandboxClient
) -> None:
    control.set_faults("minted", error_rate=1.0, error_status=502)
    response = minted()
    assert response.status_code == 502
    assert response.json()["success"] is False
    assert [r["status"] for r in control.requests("minted")] == [
        401,
        502,
    ]  # the challenge is not faulted
    control.clear_faults("minted")
    assert minted().status_code == 200


def test_fault_error_rate_vendor_spares_token_calls(
    vendor: Callable[..., requests.Response], control: SandboxClient
) -> None:
    control.set_faults("vendor", error_rate=1.0)
    assert vendor("501", {"code": "501", "erpCode": "501"}).status_code == 503
    assert control.stats()["vendor"]["by_status"] == {"200": 1, "503": 1}


def test_fault_latency(minted: Callable[..., requests.Response], control: SandboxClient) -> None:
    assert minted().status_code == 200
    seen = control.requests()[-1]["seq"]
    control.set_faults("minted", latency_ms=1500)
    with pytest.raises(requests.exceptions.ReadTimeout):
        minted(timeout=0.3)
    # The slowed request is still handled normally once the latency has passed.
    assert len(wait_for_record(control, target="minted", since_seq=seen, status=200)) == 1


def test_fault_throttle_and_retry_after_window(
    minted: Callable[..., requests.Response], control: SandboxClient
) -> None:
    control.set_faults("minted", throttle_rate=1.0, retry_after_s=1, early_grace_ms=0)
    throttled = minted()
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    control.set_faults("minted", throttle_rate=0.0)
    early = minted("MTD0000000")  # any customer: the window is target-wide
    assert early.status_code == 429
    assert control.stats()["minted"]["early_requests"] == 1
    time.sleep(1.1)
    assert minted().status_code == 200
    stats = control.stats()["minted"]
    assert stats["early_requests"] == 1 and stats["by_status"]["429"] == 2


def test_fault_outage_status(
    vendor: Callable[..., requests.Response],
    http: requests.Session,
    sandbox: Sandbox,
    control: SandboxClient,
) -> None:
    body = {"code": "501", "erpCode": "501"}
    faults = control.set_faults("vendor", outage_s=60)
    assert faults["outage_remaining_s"] > 50
    assert vendor("501", body).status_code == 503
    assert http.post(f"{sandbox.url}/vendor/auth/token", json=VENDOR_AUTH).status_code == 503
    control.set_faults("vendor", outage_s=0)
    assert vendor("501", body).status_code == 200


def test_fault_outage_reset(
    minted: Callable[..., requests.Response], control: SandboxClient
) -> None:
    control.set_faults("minted", outage_s=60, outage_mode="reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        minted()
    assert control.requests("minted")[-1]["status"] is None
    assert control.stats()["minted"]["by_status"]["reset"] == 1
    control.clear_faults("minted")
    assert minted().status_code == 200


def test_faults_at_construction() -> None:
    with (
        Sandbox(port=0, faults={"minted": {"error_rate": 1.0, "error_status": 500}}) as sb,
        requests.Session() as s,
    ):
        s.trust_env = False
        s.auth = HTTPDigestAuth(*MINTED_AUTH)
        response = s.patch(
            f"{sb.url}/partner/customer/{MINTED_ID}", json=MINTED_EXAMPLE, headers=MINTED_HEADERS
        )
        assert response.status_code == 500
    with pytest.raises(ValueError, match="bogus"):
        Sandbox(port=0, faults={"vendor": {"bogus": 1}})


# --- scripted responses -------------------------------------------------------------------


def test_script_is_fifo_and_per_customer(
    minted: Callable[..., requests.Response], control: SandboxClient
) -> None:
    assert (
        control.script(
            "minted", MINTED_ID, [{"status": 503}, {"status": 422, "message": "no such city"}]
        )
        == 2
    )
    control.put_customer("minted", "OTHER", dict(MINTED_EXAMPLE))
    assert minted("OTHER").status_code == 200  # another customer's script is untouched
    first, second, third = minted(), minted(), minted()
    assert first.status_code == 503 and first.json()["success"] is False
    assert second.status_code == 422 and second.json()["message"] == "no such city"
    assert third.status_code == 200


def test_script_429_opens_retry_after_window(
    minted: Callable[..., requests.Response], control: SandboxClient
) -> None:
    control.put_customer("minted", "OTHER", dict(MINTED_EXAMPLE))
    control.set_faults("minted", early_grace_ms=0)
    control.script("minted", MINTED_ID, [{"status": 429, "retry_after": 2}])
    throttled = minted()
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "2"
    early = minted("OTHER")
    assert early.status_code == 429 and early.headers["Retry-After"] in ("1", "2")
    assert control.stats()["minted"]["early_requests"] == 1


def test_script_minted_success_false(
    minted: Callable[..., requests.Response], control: SandboxClient
) -> None:
    before = control.get_customer("minted", MINTED_ID)
    control.script(
        "minted", MINTED_ID, [{"status": 200, "success": False, "code": 1001, "message": "locked"}]
    )
    response = minted(body={**MINTED_EXAMPLE, "phone": "+900000"})
    assert response.status_code == 200
    assert response.json() == {"success": False, "code": 1001, "message": "locked", "data": None}
    assert control.get_customer("minted", MINTED_ID) == before
    assert control.stats()["minted"]["applied"] == 0


def test_script_delay_then_normal_handling(
    minted: Callable[..., requests.Response], control: SandboxClient
) -> None:
    control.script("minted", MINTED_ID, [{"delay_s": 1.5}])
    with pytest.raises(requests.exceptions.ReadTimeout):
        minted(timeout=0.3)
    assert len(wait_for_record(control, target="minted", status=200)) == 1
    assert minted().status_code == 200


def test_script_vendor_401_then_token_accepted(
    vendor: Callable[..., requests.Response], control: SandboxClient
) -> None:
    control.script("vendor", "501", [{"status": 401}])
    body = {"code": "501", "erpCode": "501"}
    refused = vendor("501", body)
    assert refused.status_code == 401 and refused.json() == {"message": "token expired or invalid"}
    assert vendor("501", body).status_code == 200


def test_script_reset_closes_connection(
    minted: Callable[..., requests.Response], control: SandboxClient
) -> None:
    control.script("minted", MINTED_ID, [{"reset": True}])
    with pytest.raises(requests.exceptions.ConnectionError):
        minted()
    assert minted().status_code == 200


@pytest.mark.parametrize(
    ("target", "item"),
    [
        ("vendor", {"status": 200, "success": False}),
        ("minted", {"status": 200}),
        ("minted", {"status": 503, "retry_after": 1}),
        ("minted", {"bogus": 1}),
        ("minted", {"delay_s": -1}),
        ("minted", "503"),
    ],
)
def test_script_item_validation(control: SandboxClient, target: str, item: Any) -> None:
    with pytest.raises(SandboxError) as caught:
        control.script(target, "X", [item])
    assert caught.value.status == 400


# --- the request record and stats ---------------------------------------------------------


def test_record_keeps_idempotency_keys_never_credentials(
    vendor: Callable[..., requests.Response],
    minted: Callable[..., requests.Response],
    control: SandboxClient,
) -> None:
    response = vendor(
        "501", {"code": "501", "erpCode": "501"}, headers={"Idempotency-Key": "evt-v1"}
    )
    assert response.status_code == 200
    token = response.request.headers["Authorization"].split(" ", 1)[1]
    assert minted(headers={**MINTED_HEADERS, "Idempotency-Key": "evt-m1"}).status_code == 200
    records = control.requests()
    dumped = json.dumps(records)
    assert (
        token not in dumped and "vendor-sandbox-secret" not in dumped and "response=" not in dumped
    )
    (put,) = control.requests(key="evt-v1")
    assert put["method"] == "PUT" and put["customer_id"] == "501" and put["status"] == 200
    assert (
        put["headers"]["auth_scheme"] == "Bearer" and put["headers"]["idempotency-key"] == "evt-v1"
    )
    assert put["body"] == {"code": "501", "erpCode": "501"}
    token_call = next(r for r in records if r["path"] == "/vendor/auth/token")
    assert token_call["body"] == {"username": "custsync", "password": "***"}
    minted_calls = control.requests("minted", key="evt-m1")
    assert [r["status"] for r in minted_calls] == [401, 200]
    assert minted_calls[1]["headers"]["auth_scheme"] == "Digest"
    assert (
        minted_calls[1]["headers"]["x-client-id"] == "web"
        and minted_calls[1]["headers"]["api-version"] == "2"
    )


def test_record_filters(minted: Callable[..., requests.Response], control: SandboxClient) -> None:
    minted()
    last = control.requests()[-1]["seq"]
    minted("MTD0000000")
    newer = control.requests(since_seq=last)
    assert [r["customer_id"] for r in newer] == ["MTD0000000"]
    assert [r["status"] for r in control.requests(customer_id="MTD0000000")] == [404]
    assert control.requests("vendor") == []


def test_duplicate_applies_counted(
    vendor: Callable[..., requests.Response],
    minted: Callable[..., requests.Response],
    control: SandboxClient,
) -> None:
    body = {"code": "501", "erpCode": "501", "sendMail": True}
    for _ in range(2):
        assert vendor("501", body, headers={"Idempotency-Key": "evt-dup"}).status_code == 200
    assert vendor("501", body, headers={"Idempotency-Key": "evt-other"}).status_code == 200
    assert (
        vendor("501", {"code": "501"}, headers={"Idempotency-Key": "evt-other"}).status_code == 422
    )
    for _ in range(2):
        assert minted(headers={**MINTED_HEADERS, "Idempotency-Key": "evt-m"}).status_code == 200
    stats = control.stats()
    assert stats["vendor"]["applied"] == 3 and stats["vendor"]["duplicate_applies"] == 1
    assert stats["vendor"]["duplicate_keys"] == ["evt-dup"] and stats["vendor"]["emails_sent"] == 3
    assert stats["minted"]["duplicate_applies"] == 1 and stats["minted"]["duplicate_keys"] == [
        "evt-m"
    ]


# --- control API ----------------------------------------------------------------------------


def test_control_customers_and_reset(control: SandboxClient) -> None:
    assert control.health()["ok"] is True
    assert control.get_customer("vendor", "nope") is None
    assert control.put_customers("vendor", {"a/1": {"erpCode": "1"}, "b": {"erpCode": "2"}}) == 2
    assert control.get_customer("vendor", "a/1") == {"erpCode": "1", "code": "a/1"}
    assert set(control.customers("vendor")) == {"501", "a/1", "b"}
    control.put_customer("minted", MINTED_ID, {"firstname": "Changed"})
    control.set_faults("minted", error_rate=0.5)
    control.script("minted", MINTED_ID, [{"status": 503}])
    control.reset()
    assert set(control.customers("vendor")) == {"501"}
    assert control.get_customer("minted", MINTED_ID) == {**MINTED_EXAMPLE, "external_id": MINTED_ID}
    assert control.get_faults("minted")["error_rate"] == 0.0
    assert control.requests() == []


def test_control_fault_errors(control: SandboxClient) -> None:
    with pytest.raises(SandboxError, match="bogus") as unknown:
        control.set_faults("minted", bogus=1)
    assert unknown.value.status == 400
    with pytest.raises(SandboxError, match="token_ttl_s"):
        control.set_faults("minted", token_ttl_s=5)  # a vendor-only setting
    with pytest.raises(SandboxError, match="error_rate"):
        control.set_faults("vendor", error_rate=1.5, latency_ms=10)
    assert control.get_faults("vendor")["latency_ms"] == 0.0  # all or nothing
    with pytest.raises(SandboxError) as target:
        control.get_faults("nobody")
    assert target.value.status == 404


def test_unseeded_sandbox_is_empty() -> None:
    with Sandbox(port=0, seed=False) as sb, SandboxClient(sb.url) as client:
        assert client.customers("minted") == {} and client.customers("vendor") == {}


# --- command line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("minted:bogus=1", "bogus"),
        ("nonsense", "nonsense"),
        ("mars:error_rate=1", "mars"),
        ("vendor:error_rate=x", "error_rate"),
    ],
)
def test_cli_bad_fault_is_one_line(spec: str, named: str) -> None:
    result = CliRunner().invoke(sandbox_command, ["--port", "0", "--fault", spec])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in result.output


def test_cli_serves_prints_env_and_stops_on_ctrl_c() -> None:
    # A shell may start us with SIGINT ignored; the child must see Ctrl-C all the same.
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from custsync.cli.sandbox_cmd import sandbox_command; sandbox_command()"
    )
    args = [
        sys.executable,
        "-c",
        code,
        "--port",
        "0",
        "--fault",
        "minted:error_rate=1",
        "--token-ttl",
        "60",
    ]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        env = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(6))
        url = env["CUSTSYNC_MINTED_BASE_URL"]
        assert url in banner and env["CUSTSYNC_VENDOR_BASE_URL"] == url
        assert env["CUSTSYNC_VENDOR_PASSWORD"] == "vendor-sandbox-secret"
        with SandboxClient(url) as client:
            assert client.get_faults("minted")["error_rate"] == 1.0
        token = requests.post(f"{url}/vendor/auth/token", json=VENDOR_AUTH, timeout=10).json()
        assert token["expiresIn"] == 60
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert "Traceback" not in stderr
