"""Issue 5 in one real run (tests.operations_run): Sentry without personal data, grouped dead
letters, one event per outage, scrubbed logs, /metrics with the run's counts (promtool-clean),
and Flower listing the tasks."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from custsync.embedded.server import EphemeralRedis
from custsync.targets import REGISTRY
from tests.conftest import wait_for
from tests.operations_run import Run, flower_tasks, operations_run
from tests.tools import debian_tool


@pytest.fixture(scope="module")
def run(redis_server: EphemeralRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    with operations_run(redis_server, tmp_path_factory.mktemp("operations")) as played:
        yield played


def _kind(event: dict[str, Any]) -> str:
    fingerprint = event.get("fingerprint") or [""]
    if fingerprint[0] in ("custsync-dead-letter", "custsync-breaker-open"):
        return str(fingerprint[0])
    return str(event.get("logger") or "other")


def _events(run: Run) -> list[dict[str, Any]]:
    """Every event, once the run's dead letters and unexpected errors have all arrived."""

    def arrived() -> list[dict[str, Any]] | None:
        events = run.capture.events()
        kinds = Counter(_kind(e) for e in events)
        want = len(run.dead)
        done = kinds["custsync-dead-letter"] >= want and kinds["custsync.pipeline"] >= 1
        return events if done and kinds["custsync-breaker-open"] else None

    result: list[dict[str, Any]] = wait_for(arrived, timeout_s=30)
    return result


def _leaks(text: str, run: Run) -> list[str]:
    return [name for name, value in run.canaries().items() if value and value in text]


def test_no_canary_reaches_any_sentry_envelope(run: Run) -> None:
    _events(run)
    raw = run.capture.raw().decode("utf-8", errors="replace")
    assert raw
    assert _leaks(raw, run) == []


def test_each_dead_letter_is_one_warning_grouped_by_target_and_reason(run: Run) -> None:
    letters = [e for e in _events(run) if _kind(e) == "custsync-dead-letter"]
    by_id = Counter(e["tags"]["event_id"] for e in letters)
    assert by_id == Counter(list(run.dead))  # each once, none for anything else
    for event in letters:
        target, reason = run.dead[event["tags"]["event_id"]]
        assert event["level"] == "warning"
        assert event["fingerprint"] == ["custsync-dead-letter", target, reason]
        assert (event["tags"]["target"], event["tags"]["reason"]) == (target, reason)
        assert event["extra"]["celery-job"]["args"] == "[Filtered]"


def test_unexpected_exception_is_an_error_with_its_message_scrubbed(run: Run) -> None:
    errors = [e for e in _events(run) if _kind(e) == "custsync.pipeline"]
    logged = run.worker.log_text().count('"msg":"unexpected error applying')
    assert 1 <= len(errors) < logged  # every attempt logged; the repeats within a minute not sent
    for event in errors:
        assert event["level"] == "error"
        (exc,) = event["exception"]["values"]
        assert exc["type"] == "RuntimeError"
        assert "client bug sending" in exc["value"]
        assert "Bearer ***" in exc["value"] or "'password': '***'" in exc["value"]
        assert all("vars" not in f for f in exc["stacktrace"]["frames"])


def test_an_outage_is_one_event_and_retries_are_not_reported(run: Run) -> None:
    events = _events(run)
    outage = [e for e in events if _kind(e) == "custsync-breaker-open"]
    assert len(outage) == 1
    assert outage[0]["tags"]["target"] == "vendor"
    assert outage[0]["level"] == "error"
    retried = [line for e in run.applied for line in run.worker.outcomes(e)]
    assert any(line["outcome"] == "retry_scheduled" for line in retried)
    logged = [json.dumps([e.get("logger"), e.get("logentry")]) for e in events]
    assert not [e for e in logged if "custsync.outcome" in e or "breaker opened after" in e]


def test_logs_hold_no_canary_and_one_line_per_outcome(run: Run) -> None:
    text = run.worker.log_text()
    assert _leaks(text, run) == []
    assert "client bug sending" in text  # the unexpected error was logged, scrubbed
    line = run.terminal(run.applied[-1])
    assert line is not None
    assert {"event_id", "target", "customer", "outcome", "attempt", "status", "duration_ms"} <= set(
        line
    )
    assert line["level"] == "info"
    assert run.terminal(next(iter(run.dead)))["level"] == "error"  # type: ignore[index]


def _scrape(run: Run) -> str:
    response = requests.get(run.metrics_url, timeout=5)
    response.raise_for_status()
    return response.text


def _outcome_counts(run: Run) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for raw in run.worker.log_text().splitlines():
        if raw.startswith("{"):
            data = json.loads(raw)
            if "outcome" in data and data.get("logger") == "custsync.outcome":
                target = data["target"] if data["target"] in REGISTRY else "other"
                counts[(target, data["outcome"])] += 1
    return counts


def test_metrics_show_the_counts_of_the_run(run: Run) -> None:
    _events(run)
    text = _scrape(run)
    assert _leaks(text, run) == []
    assert not [e for e in [*run.dead, *run.applied] if e in text]  # no ids in labels
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    for (target, outcome), n in _outcome_counts(run).items():
        assert value("custsync_events_total", target=target, outcome=outcome) == n
    for target, reason in set(run.dead.values()):
        expected = sum(1 for v in run.dead.values() if v == (target, reason))
        assert value("custsync_dead_letters_total", target=target, reason=reason) == expected
    for reason in ("invalid", "rejected", "exhausted"):
        expected = sum(1 for _, r in run.dead.values() if r == reason)
        assert value("custsync_dlq_entries", reason=reason) == expected
    name = "custsync_partner_request_duration_seconds_count"
    assert value(name, target="minted", status_class="4xx") >= 1
    assert value(name, target="vendor", status_class="5xx") >= 3
    assert value(name, target="vendor", status_class="2xx") >= 7
    assert value("custsync_token_renewals_total", target="vendor") >= 1
    assert value("custsync_breaker_opens_total", target="vendor") >= 1
    assert value("custsync_breaker_state", target="vendor", state="closed") == 1
    assert value("custsync_retry_set_size", target="vendor") == 0
    assert value("custsync_queue_messages", queue="custsync") == 0
    assert value("custsync_redis_up") == 1


def test_metrics_pass_promtool(run: Run) -> None:
    promtool = debian_tool("promtool", "prometheus")
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=_scrape(run),
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_flower_lists_the_tasks_of_the_run(run: Run) -> None:
    wanted = {*run.dead, *run.applied[-6:]}

    def listed() -> dict[str, Any] | None:
        tasks = flower_tasks(run.flower_url)
        shown = {t.get("args") or "" for t in tasks.values()}
        batches = [s for s in shown if s.startswith("(<batch of ")]

        def found(e: str) -> bool:  # its own task, or named in its batch's label
            return any(s.startswith(f"(<envelope {e} ") for s in shown) or any(
                e in b for b in batches
            )

        return tasks if all(found(e) for e in wanted) else None

    tasks = wait_for(listed, timeout_s=20, interval_s=0.3)
    assert _leaks(json.dumps(tasks), run) == []
    states = {t["state"] for t in tasks.values() if (t.get("args") or "").endswith(">,)")}
    assert "SUCCESS" in states
