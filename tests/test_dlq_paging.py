"""Cursor paging of the DLQ on a real Redis: every entry exactly once across pages (ties
included, on the exact and the filtered paths), unshifted by entries that leave between
pages, through ``Query.page``, ``GET /v1/dlq``, the console and ``custsync dlq list``; a
malformed cursor is a clear error naming ``cursor``."""

from __future__ import annotations

import base64
import html
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from custsync.dlq.entry import DeadLetter
from custsync.dlq.purge import purge
from custsync.dlq.query import BadCursor, Filter, Page, Query
from custsync.embedded.server import EphemeralRedis
from custsync.http.app import create_app
from custsync.runtime import Runtime
from custsync.sandbox import Sandbox
from custsync.settings import load_settings
from tests.conftest import run_cli
from tests.dlq_support import Quiet, entry, json_lines

PAGING_DB = 27
BASE = time.time() - 3600.0  # the seeded entries' first dead-lettered time
VIEWER, PASSWORD = "vera", "vera-long-password-1"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{VIEWER}:{PASSWORD}".encode()).decode()}


@pytest.fixture
def quiet(redis_server: EphemeralRedis, sandbox: Sandbox, tmp_path: Path) -> Quiet:
    operators = str(tmp_path / "operators.json")
    return Quiet(redis_server, sandbox, db=PAGING_DB, CUSTSYNC_OPERATORS_FILE=operators)


def seeded(quiet: Quiet) -> list[DeadLetter]:
    """40 entries in runs of equal dead-lettered times (a bulk import), so pages end inside
    a run of ties; two targets, two reasons, a few customers and errors."""
    entries = []
    for i in range(40):
        e = entry(
            "minted" if i % 3 else "vendor",
            "not_found" if i % 4 else "rejected",
            customer_id=f"C-{i % 5}",
            status=404 if i % 4 else 422,
            error="answered 404: gone" if i % 2 else "answered 422: locked",
        )
        e.dead_lettered_at = BASE + (i // 7)  # runs of 7 tied scores
        entries.append(e)
    quiet.rt.dlq.add_many(entries)
    return entries


def newest_first(entries: list[DeadLetter], flt: Filter) -> list[str]:
    """The order every index keeps: time, then entry id, both descending."""
    chosen = [e for e in entries if flt.matches(e)]
    chosen.sort(key=lambda e: (e.dead_lettered_at, e.entry_id), reverse=True)
    return [e.entry_id for e in chosen]


def pages(query: Query, limit: int) -> Iterator[Page]:
    cursor = None
    while True:
        page = query.page(limit, cursor)
        yield page
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


FILTERS = [
    Filter(),  # exact: the whole-DLQ index
    Filter(target="minted", reason="not_found"),  # exact: the pair index
    Filter(customer_id="C-2"),  # exact: the customer index
    Filter(target="minted", status=422),  # walks one index, probes the other
    Filter(grep="LOCKED"),  # reads entries to test the text
    Filter(customer_id="C-1", grep="gone", since=BASE + 1, until=BASE + 4),
]


@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: repr(f)[7:60])
def test_pages_list_every_entry_once_in_index_order(quiet: Quiet, flt: Filter) -> None:
    entries = seeded(quiet)
    expected = newest_first(entries, flt)
    assert expected, "the filter must select something"
    for limit in (1, 3, 7, 50):
        walked = list(pages(Query(quiet.rt.dlq, flt, batch=4), limit))
        seen = [e.entry_id for page in walked for e in page.entries]
        assert seen == expected, (flt, limit)
        assert all(len(page.entries) == limit for page in walked[:-1])
        assert [page.more for page in walked] == [True] * (len(walked) - 1) + [False]
        assert walked[0].total in (None, len(expected))


def test_a_cursor_is_unshifted_by_entries_that_leave_or_arrive_between_pages(
    quiet: Quiet,
) -> None:
    entries = seeded(quiet)
    store = quiet.rt.dlq
    order = newest_first(entries, Filter())
    first = Query(store, Filter()).page(10)
    shown = [e.entry_id for e in first.entries]
    assert shown == order[:10]
    # Replayed meanwhile: the page's last entry (the cursor's own), a tie of it, and two
    # entries not shown yet; one new failure arrives (newer than the cursor).
    gone = {shown[-1], shown[-2], order[10], order[25]}
    assert len(purge(store, sorted(gone), Filter())) == 4
    newcomer = store.add(entry(age_s=0))

    after: list[str] = []
    cursor = first.next_cursor
    while cursor is not None:
        page = Query(store, Filter()).page(10, cursor)
        after += [e.entry_id for e in page.entries]
        cursor = page.next_cursor
    assert after == [i for i in order[10:] if i not in gone]
    again = [e.entry_id for page in pages(Query(store, Filter()), 10) for e in page.entries]
    assert again == [newcomer.entry_id, *(i for i in order if i not in gone)]


BAD_CURSORS = [
    "10",  # an offset, as the old API took
    "not base64!",
    base64.urlsafe_b64encode(b"not json").decode(),
    base64.urlsafe_b64encode(b'{"score": 1}').decode(),
    base64.urlsafe_b64encode(b'[1, ""]').decode(),
    base64.urlsafe_b64encode(b'["x", "e1"]').decode(),
    base64.urlsafe_b64encode(b'[1e999, "e1"]').decode(),
    "\u00e9t\u00e9",
]


def test_a_malformed_cursor_raises_bad_cursor(quiet: Quiet) -> None:
    seeded(quiet)
    for bad in BAD_CURSORS:
        with pytest.raises(BadCursor, match="cursor"):
            Query(quiet.rt.dlq, Filter()).page(5, bad)


@pytest.fixture
def client(quiet: Quiet) -> FlaskClient:
    added = run_cli(
        quiet.env, "operators", "add", VIEWER, "--role", "viewer", stdin=f"{PASSWORD}\n" * 2
    )
    assert added.returncode == 0, added.stderr
    return create_app(Runtime(load_settings(quiet.env)), secure_cookies=False).test_client()


def test_the_api_pages_by_cursor_and_answers_a_bad_one_with_422(
    quiet: Quiet, client: FlaskClient
) -> None:
    entries = seeded(quiet)
    expected = newest_first(entries, Filter(reason="not_found"))
    seen: list[str] = []
    cursor = ""
    while True:
        got = client.get(f"/v1/dlq?reason=not_found&limit=4{cursor}", headers=AUTH)
        assert got.status_code == 200
        body = got.get_json()
        assert body["total"] == len(expected)
        seen += [row["entry_id"] for row in body["entries"]]
        if body["next_cursor"] is None:
            break
        cursor = f"&cursor={body['next_cursor']}"
    assert seen == expected

    for bad in BAD_CURSORS:
        answer = client.get("/v1/dlq", query_string={"cursor": bad}, headers=AUTH)
        assert answer.status_code == 422, bad
        problem = answer.get_json()
        assert "cursor" in problem["errors"]["query"], problem
        assert "Traceback" not in answer.get_data(as_text=True)


def _console(client: FlaskClient) -> FlaskClient:
    client.get("/console/login")  # the session key comes from Redis on first use
    with client.session_transaction() as session:
        session["who"], session["role"] = VIEWER, "viewer"
    return client


def test_the_console_pages_by_cursor_keeping_the_filters(quiet: Quiet, client: FlaskClient) -> None:
    many = [entry(customer_id=f"C-{i}", age_s=float(i)) for i in range(120)]
    many.append(entry("vendor", age_s=0.5))  # filtered out
    quiet.rt.dlq.add_many(many)
    expected = newest_first(many, Filter(target="minted"))
    console = _console(client)
    url: str | None = "/console/dlq?target=minted"
    seen: list[str] = []
    while url:
        text = console.get(url).get_data(as_text=True)
        seen += re.findall(r'href="/console/dlq/([0-9a-f]+)"', text)
        older = re.search(r'rel="next" href="([^"]+)"', text)
        url = html.unescape(older.group(1)) if older else None
        if url:
            assert "target=minted" in url and "cursor=" in url
    assert seen == expected
    bad = console.get("/console/dlq?cursor=10")
    assert bad.status_code == 400 and "cursor" in bad.get_data(as_text=True)


def test_the_cli_pages_by_cursor(quiet: Quiet) -> None:
    entries = seeded(quiet)
    expected = newest_first(entries, Filter(target="vendor"))
    first = quiet.cli("dlq", "list", "--target", "vendor", "--limit", "5", "--json")
    assert [row["entry_id"] for row in json_lines(first.stdout)] == expected[:5]
    token = first.stderr.split("next page: --cursor ")[1].split()[0]
    second = quiet.cli("dlq", "list", "--target", "vendor", "--limit", "5", "--cursor", token)
    assert second.returncode == 0, second.stderr
    labels = {e.entry_id: e.label for e in entries}
    listed = [line.split()[0] for line in second.stdout.splitlines()[1:]]
    assert listed == [labels[i] for i in expected[5:10]]
    assert f"5 entries of {len(expected)}; next page: --cursor " in second.stderr
    bad = quiet.cli("dlq", "list", "--cursor", "10")
    assert bad.returncode == 2 and "--cursor" in bad.stderr
    assert "Traceback" not in bad.stderr
