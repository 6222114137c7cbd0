"""The console in a real browser (Debian's chromium driven by playwright) against a real
``custsync serve``, a real worker, Redis and the sandbox: log in, look, filter, replay a
group after the partner learned the customers, reveal, and what a viewer cannot do.
Screenshots of each page land in the test's folder (and CONSOLE_SHOTS, when set)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from custsync.celery_app import producer_app
from custsync.embedded.server import EphemeralRedis
from custsync.http.operators import add_user
from custsync.producer import enqueue
from custsync.runtime import Runtime
from custsync.sandbox import Sandbox, SandboxClient
from custsync.settings import load_settings
from tests.conftest import WorkerProcess, custsync_env, db_url, wait_for
from tests.dlq_support import entry, redis_contents
from tests.events import MINTED_EXAMPLE, envelope, new_id
from tests.serving import serving
from tests.tools import debian_tool

DB = 26
PASSWORDS = {"alice": "alice-long-password-1", "bob": "bob-long-password-22"}
PLANTED = "Quillbarrowen"  # a last name no pattern would mask: only the allow-list does
GROUP = 50  # one group of not_found, replayed as a background job
SLOW = 12  # a second group, replayed slowly, cancelled and resumed


@dataclass
class Console:
    url: str
    shots: Path
    customers: list[str]
    event_ids: list[str]
    sandbox: SandboxClient
    rt: Runtime


def _chromium() -> str:
    return debian_tool("chromium", "chromium")


@pytest.fixture(scope="module")
def console(
    redis_server: EphemeralRedis,
    sandbox: Sandbox,
    sandbox_client: SandboxClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Console]:
    folder = tmp_path_factory.mktemp("console")
    operators = folder / "operators.json"
    add_user(operators, "alice", "operator", PASSWORDS["alice"])
    add_user(operators, "bob", "viewer", PASSWORDS["bob"])
    queue = redis.Redis.from_url(db_url(redis_server, DB))
    queue.flushdb()
    env = custsync_env(redis_server, sandbox, DB, CUSTSYNC_OPERATORS_FILE=str(operators))
    worker = WorkerProcess(env, folder / "worker.log").start()
    try:
        with serving(env, folder / "serve.log", threads=8) as (url, _):
            customers = [new_id("GONE") for _ in range(GROUP)]  # unknown to the partner: 404
            events = [
                envelope("minted", c, {**MINTED_EXAMPLE, "external_id": c, "lastname": PLANTED})
                for c in customers
            ]
            rt = Runtime(load_settings(env))
            enqueue([(e, None) for e in events], producer_app(rt))
            ids = [e["event_id"] for e in events]
            yield Console(url, folder, customers, ids, sandbox_client, rt)
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _login(browser: object, console: Console, name: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{console.url}/console/")
    assert "/console/login" in page.url
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_url(f"{console.url}/console/")
    return page


def _shot(page, console: Console, name: str) -> None:  # type: ignore[no-untyped-def]
    path = console.shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    extra = os.environ.get("CONSOLE_SHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)


def test_an_operator_replays_a_group_after_the_partner_learned_the_customers(
    console: Console, browser: object
) -> None:
    wait_for(lambda: _dead_lettered_count(console) >= GROUP, timeout_s=60)
    page = _login(browser, console, "alice")
    assert "minted" in page.inner_text("main")
    _shot(page, console, "overview")

    page.click("text=DLQ")
    page.select_option("select[name=reason]", "not_found")
    page.click("form.filters button")
    page.wait_for_selector("table.dlq tbody tr td a")
    assert page.locator("table.dlq tbody tr").count() == GROUP
    assert PLANTED not in page.content()  # masked by allow-list
    _shot(page, console, "dlq")

    page.locator("table.dlq tbody tr td a").first.click()
    assert PLANTED not in page.content()
    assert '"lastname": "***"' in page.inner_text("pre")
    _shot(page, console, "entry")
    page.click("text=Reveal personal data")
    assert PLANTED in page.content()  # revealed, on request, and audited

    page.click("header >> text=Groups")
    assert page.locator("table.groups tbody tr").count() == 1
    _shot(page, console, "groups")

    console.sandbox.put_customers(
        "minted", {c: {**MINTED_EXAMPLE, "external_id": c} for c in console.customers}
    )
    page.click("table.groups button")
    assert f"{GROUP}</strong> would be sent" in page.content()  # the dry run, first
    _shot(page, console, "replay-preview")
    page.click(f"text=Replay {GROUP} events")
    page.wait_for_url("**/console/jobs/*")
    page.wait_for_selector(".job-state.state-done", timeout=60_000)  # htmx polls the progress
    assert f"replayed {GROUP} of {GROUP}" in page.inner_text("#progress")
    _shot(page, console, "replay-job")
    wait_for(lambda: all(_lastname(console, c) == PLANTED for c in console.customers), 60)
    for customer in console.customers:
        calls = console.sandbox.requests("minted", customer_id=customer)
        answered = sorted(c["status"] for c in calls if c["status"] != 401)  # 401: Digest
        assert answered == [200, 404]  # the first try, then applied once
        assert len({c["idempotency_key"] for c in calls}) == 1  # with its original key
    assert _dead_lettered_count(console) == 0
    page.click("header >> text=Overview")  # the chart counts what the workers did
    legend = page.inner_text("section.card:has(h2:text('minted')) .legend")
    assert f"applied {GROUP}" in legend and f"dead-lettered {GROUP}" in legend
    _shot(page, console, "overview-after")

    page.click("header >> text=Audit")
    assert "replay" in page.inner_text("main") and "reveal" in page.inner_text("main")
    _shot(page, console, "audit")


def _lastname(console: Console, customer: str) -> object:
    return (console.sandbox.get_customer("minted", customer) or {}).get("lastname")


def _dead_lettered_count(console: Console) -> int:
    return int(console.rt.dlq.count())


def test_a_viewer_sees_no_action_and_forged_posts_are_refused(
    console: Console, browser: object
) -> None:
    page = _login(browser, console, "bob")
    page.click("header >> text=Groups")
    assert page.locator("table.groups button").count() == 0
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    forged = page.request.post(
        f"{console.url}/console/replay", form={"csrf": csrf or "", "reason": "not_found"}
    )
    assert forged.status == 403  # a viewer, even with a valid form token
    no_token = page.request.post(f"{console.url}/console/replay", form={"reason": "not_found"})
    assert no_token.status == 403
    assert "CSRF" in no_token.text()
    missing = page.goto(f"{console.url}/console/dlq/no-such-id")
    assert missing is not None and missing.status == 404  # a page for a person, not JSON
    assert "no DLQ entry" in page.inner_text("main") and "Overview" in page.inner_text("header")


def test_an_operator_forgets_a_customer_after_typing_the_confirmation(
    console: Console, browser: object
) -> None:
    customer, value = new_id("ERASE"), "Thistlewaithe"
    planted = entry(customer_id=customer, changes={**MINTED_EXAMPLE, "lastname": value})
    console.rt.dlq.add_many([planted])
    raw = redis.Redis.from_url(console.rt.redis_url)
    assert value.encode() in redis_contents(raw)  # the search finds it while it is there
    page = _login(browser, console, "alice")
    page.goto(f"{console.url}/console/dlq/{planted.event_id}")
    assert value not in page.content()
    page.click("text=Forget this customer")  # without the typed word: refused
    assert 'type "forget"' in page.inner_text("main")
    assert console.rt.dlq.for_event(planted.event_id)
    page.fill("input[name=confirm]", "forget")
    page.click("text=Forget this customer")
    assert "forgot customer" in page.inner_text("main")
    _shot(page, console, "forgotten")
    assert not console.rt.dlq.for_event(planted.event_id)
    everything = redis_contents(raw)
    assert value.encode() not in everything and customer.encode() not in everything


def test_a_slow_replay_is_cancelled_mid_way_and_resumed(console: Console, browser: object) -> None:
    customers = [new_id("SLOW") for _ in range(SLOW)]
    events = [envelope("minted", c, {**MINTED_EXAMPLE, "external_id": c}) for c in customers]
    enqueue([(e, None) for e in events], producer_app(console.rt))
    wait_for(lambda: _dead_lettered_count(console) >= SLOW, timeout_s=60)
    console.sandbox.put_customers(
        "minted", {c: {**MINTED_EXAMPLE, "external_id": c} for c in customers}
    )
    page = _login(browser, console, "alice")
    page.click("header >> text=Groups")
    page.click("table.groups button")
    page.fill("input[name=rate]", "2")  # two a second: slow enough to cancel mid-way
    page.click(f"text=Replay {SLOW} events")
    page.wait_for_url("**/console/jobs/*")
    wait_for(lambda: _replayed(page) >= 2, timeout_s=30, interval_s=0.3)
    page.click("#progress button.danger")  # Cancel
    page.wait_for_selector(".job-state.state-cancelled", timeout=15_000)
    stopped = _replayed(page)
    assert 2 <= stopped < SLOW
    _shot(page, console, "replay-cancelled")
    assert _dead_lettered_count(console) == SLOW - stopped  # the rest waits in the DLQ

    page.click("text=Resume")
    page.wait_for_selector(".job-state.state-done", timeout=60_000)
    assert f"replayed {SLOW} of {SLOW}" in page.inner_text("#progress")
    wait_for(lambda: _dead_lettered_count(console) == 0, timeout_s=30)
    for event, customer in zip(events, customers, strict=True):
        applied = [
            c
            for c in console.sandbox.requests("minted", customer_id=customer)
            if c["status"] == 200
        ]
        assert [c["idempotency_key"] for c in applied] == [event["event_id"]]  # once, its key
    page.click("header >> text=Audit")
    actions = page.inner_text("main")
    assert "cancel-replay" in actions and "resume-replay" in actions


def _replayed(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.inner_text("#progress .replayed"))


def test_an_operator_edits_a_rejected_event_and_it_is_applied_as_a_new_event(
    console: Console, browser: object
) -> None:
    customer, fixed = new_id("EDIT"), "Brackenholt"
    console.sandbox.put_customers("minted", {customer: {**MINTED_EXAMPLE, "external_id": customer}})
    console.sandbox.script("minted", customer, [{"status": 422, "message": "lastname refused"}])
    refused = envelope("minted", customer, {**MINTED_EXAMPLE, "external_id": customer})
    enqueue([(refused, None)], producer_app(console.rt))
    wait_for(lambda: console.rt.dlq.for_event(refused["event_id"]), timeout_s=60)
    page = _login(browser, console, "alice")
    page.goto(f"{console.url}/console/dlq?reason=rejected")
    page.click(f"text={refused['event_id']}")
    page.click("text=Edit and replay")
    page.fill("input[name='field.lastname']", "Qu")  # too short for Minted's schema
    page.click("button[value=send]")
    assert "lastname" in page.inner_text(".flash.error")  # refused before sending
    page.fill("input[name='field.lastname']", fixed)
    page.click("button[value=preview]")
    diff = page.inner_text("table.diff")
    assert "lastname" in diff and fixed not in diff  # the form shows it; the diff masks it
    assert "middlename" not in diff  # sent empty, left empty: not an edit
    _shot(page, console, "edit")
    page.click("button[value=send]")
    assert "sent as new event" in page.inner_text("main")
    wait_for(lambda: _lastname(console, customer) == fixed, timeout_s=60)
    calls = console.sandbox.requests("minted", customer_id=customer)
    answered = [(c["status"], c["idempotency_key"]) for c in calls if c["status"] != 401]
    assert [status for status, _ in answered] == [422, 200]
    assert answered[0][1] == refused["event_id"] != answered[1][1]  # a new event id
    assert not console.rt.dlq.for_event(refused["event_id"])
    page.click("header >> text=Audit")
    assert "edit" in page.inner_text("main") and fixed not in page.content()
