"""Background replay jobs on a real Redis: started through the operator API, run by the
runner every ``custsync serve`` process has, one per scope, cancelled and resumed, handed
over when a server stops, pinned to what was in the DLQ when the job began."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from custsync.dlq.jobs import CANCELLED, DONE, QUEUED, JobRunner, Jobs
from custsync.state.audit import Audit
from tests.conftest import wait_for
from tests.dlq_support import Quiet, entry, queued_event_ids
from tests.operator_support import PASSWORDS, basic, client_fixture, quiet_fixture  # noqa: F401


@pytest.fixture
def runners(quiet: Quiet) -> Iterator[list[JobRunner]]:
    started: list[JobRunner] = []
    yield started
    for runner in started:
        runner.stop()


def _runner(quiet: Quiet, started: list[JobRunner]) -> JobRunner:
    runner = JobRunner(quiet.rt, quiet.app, poll_s=0.05).start()
    started.append(runner)
    return runner


def _seed(quiet: Quiet, n: int) -> list[str]:
    entries = [entry(customer_id=f"C-{i}", age_s=100.0 - i / 100) for i in range(n)]
    quiet.rt.dlq.add_many(entries)
    return [e.event_id for e in entries]


def _queued(quiet: Quiet) -> Counter[str]:
    """Event ids of the messages on the Celery queue: each once, unless sent twice."""
    return Counter(queued_event_ids(quiet.rt.redis))


def _job(client: FlaskClient, job_id: str) -> dict:  # type: ignore[type-arg]
    answer = client.get(f"/v1/replay-jobs/{job_id}", headers=basic("bob"))
    assert answer.status_code == 200
    return answer.get_json()  # type: ignore[no-any-return]


def test_a_job_replays_its_filter_once_and_a_second_job_of_that_scope_is_refused(
    quiet: Quiet, client: FlaskClient
) -> None:
    events = _seed(quiet, 5)
    quiet.rt.dlq.add_many([entry("vendor", "rejected", status=422, error="vendor said 422")])
    body = {"filter": {"reason": "not_found"}}
    assert client.post("/v1/replay-jobs", json=body, headers=basic("bob")).status_code == 403
    started = client.post("/v1/replay-jobs", json=body, headers=basic("alice"))
    assert started.status_code == 202, started.get_json()
    job_id = started.get_json()["job_id"]
    assert started.get_json()["state"] == QUEUED
    again = client.post("/v1/replay-jobs", json=body, headers=basic("alice"))
    assert again.status_code == 409 and again.get_json()["job_id"] == job_id

    assert JobRunner(quiet.rt, quiet.app).run_waiting() == 1
    job = _job(client, job_id)
    assert (job["state"], job["replayed"], job["total"], job["percent"]) == (DONE, 5, 5, 100)
    assert _queued(quiet) == Counter(events)  # each once, the vendor entry stays
    assert quiet.rt.dlq.count() == 1
    actions = [
        (a["action"], a["count"]) for a in reversed(Audit(quiet.rt.redis, quiet.rt.keys).newest())
    ]
    assert actions == [("replay-job", 0), ("replay", 5)]
    # The scope is free again once the job is done.
    assert client.post("/v1/replay-jobs", json=body, headers=basic("alice")).status_code == 202


def test_a_cancelled_job_stops_mid_way_and_resumes_where_the_dlq_says(
    quiet: Quiet, client: FlaskClient, runners: list[JobRunner]
) -> None:
    events = _seed(quiet, 30)
    body = {"filter": {"target": "minted"}, "rate": 20}
    job_id = client.post("/v1/replay-jobs", json=body, headers=basic("alice")).get_json()["job_id"]
    _runner(quiet, runners)
    wait_for(lambda: _job(client, job_id)["replayed"] >= 5, timeout_s=20)
    cancel = client.post(f"/v1/replay-jobs/{job_id}/cancel", headers=basic("alice"))
    assert cancel.status_code == 200
    wait_for(lambda: _job(client, job_id)["state"] == CANCELLED, timeout_s=10)
    stopped = _job(client, job_id)["replayed"]
    time.sleep(0.5)  # a cancelled job moves nothing more
    assert _job(client, job_id)["replayed"] == stopped < 30
    assert quiet.rt.dlq.count() == 30 - stopped
    assert sum(_queued(quiet).values()) == stopped
    refused = client.post(f"/v1/replay-jobs/{job_id}/cancel", headers=basic("alice"))
    assert refused.status_code == 409

    assert (
        client.post(f"/v1/replay-jobs/{job_id}/resume", headers=basic("alice")).status_code == 200
    )
    wait_for(lambda: _job(client, job_id)["state"] == DONE, timeout_s=20)
    done = _job(client, job_id)
    assert (done["replayed"], done["runs"]) == (30, 2)
    assert _queued(quiet) == Counter(events)  # every event once, none twice
    assert quiet.rt.dlq.count() == 0


def test_a_stopping_server_hands_its_job_to_another(
    quiet: Quiet, client: FlaskClient, runners: list[JobRunner]
) -> None:
    events = _seed(quiet, 30)
    body = {"filter": {"reason": "not_found"}, "rate": 20}
    job_id = client.post("/v1/replay-jobs", json=body, headers=basic("alice")).get_json()["job_id"]
    first = _runner(quiet, runners)
    wait_for(lambda: _job(client, job_id)["replayed"] >= 5, timeout_s=20)
    first.stop()  # what gunicorn's worker_exit hook does on a graceful stop
    assert _job(client, job_id)["state"] == QUEUED
    _runner(quiet, runners)
    wait_for(lambda: _job(client, job_id)["state"] == DONE, timeout_s=20)
    assert _job(client, job_id)["replayed"] == 30
    assert _queued(quiet) == Counter(events)


def test_a_job_leaves_what_failed_after_it_began(quiet: Quiet, client: FlaskClient) -> None:
    _seed(quiet, 3)
    job_id = client.post(
        "/v1/replay-jobs", json={"filter": {"reason": "not_found"}}, headers=basic("alice")
    ).get_json()["job_id"]
    later = entry(customer_id="C-late", age_s=-1.0)  # dead-lettered after the job began
    quiet.rt.dlq.add_many([later])
    JobRunner(quiet.rt, quiet.app).run_waiting()
    assert _job(client, job_id)["replayed"] == 3
    assert [e.event_id for e in quiet.rt.dlq.load(quiet.rt.dlq.resolve(later.event_id))] == [
        later.event_id
    ]


def test_unknown_jobs_and_bad_bodies_get_clear_answers(quiet: Quiet, client: FlaskClient) -> None:
    assert client.get("/v1/replay-jobs/nope", headers=basic("bob")).status_code == 404
    assert client.post("/v1/replay-jobs/nope/resume", headers=basic("alice")).status_code == 404
    empty = client.post("/v1/replay-jobs", json={}, headers=basic("alice"))
    assert empty.status_code == 422 and "filter" in empty.get_json()["detail"]
    slow = client.post("/v1/replay-jobs", json={"all": True, "rate": 0}, headers=basic("alice"))
    assert slow.status_code == 422 and "rate" in str(slow.get_json()["errors"])
    assert Jobs(quiet.rt).recent() == []


def _console_login(client: FlaskClient, name: str) -> str:
    """Log in through the console's form; the CSRF token for later forms. The login page is
    the first request of a new app: its session must work before any other console page."""
    page = client.get("/console/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    done = client.post(
        "/console/login", data={"name": name, "password": PASSWORDS[name], "csrf": csrf[1]}
    )
    assert done.status_code == 302
    fresh = re.search(
        r'name="csrf" value="([^"]+)"', client.get("/console/").get_data(as_text=True)
    )
    assert fresh is not None  # logging in starts a new session, with a new token
    return fresh[1]


def test_the_console_asks_for_the_number_typed_above_a_hundred(
    quiet: Quiet, client: FlaskClient
) -> None:
    _seed(quiet, 101)
    csrf = _console_login(client, "alice")
    form = {"csrf": csrf, "reason": "not_found", "confirm": "yes"}
    untyped = client.post("/console/replay", data=form)
    assert untyped.status_code == 200 and "type 101 to confirm" in untyped.get_data(as_text=True)
    wrong = client.post("/console/replay", data={**form, "typed": "100"})
    assert wrong.status_code == 200 and Jobs(quiet.rt).recent() == []
    typed = client.post("/console/replay", data={**form, "typed": "101"})
    assert typed.status_code == 302 and "/console/jobs/" in typed.headers["Location"]
    (job,) = Jobs(quiet.rt).recent()
    assert job.scope.filter.reason == "not_found" and job.by == "alice"
