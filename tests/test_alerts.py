"""The alert rules: promtool accepts them and its unit tests (custsync-rules.test.yml) fire and
do not fire each alert; the PrometheusRule holds the same groups; every alert tells the
operator what to do and reads only metrics custsync exports."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from custsync.embedded.server import EphemeralRedis
from custsync.state.keys import QUEUE, partner_queue
from tests.conftest import db_url
from tests.promql import SCRAPE_SERIES, exported_metric_names, metric_names
from tests.tools import debian_tool

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "custsync-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "custsync-rules.test.yml"
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "monitoring" / "prometheusrule.yaml"
SERVICE_MONITORS = ROOT / "deploy" / "k8s" / "monitoring" / "servicemonitor.yaml"
STATE_DB = 30  # read only: the collector's families do not depend on what Redis holds


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _alerts() -> list[dict[str, Any]]:
    return [rule for group in _load(RULES)["groups"] for rule in group["rules"]]


def _promtool(*args: str) -> None:
    done = subprocess.run(
        [debian_tool("promtool", "prometheus"), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_checks_the_rules_file() -> None:
    _promtool("check", "rules", str(RULES))


def test_promtool_unit_tests_fire_and_hold_every_alert() -> None:
    _promtool("test", "rules", str(RULE_TESTS))


def test_the_unit_tests_have_a_firing_and_a_quiet_case_for_every_alert() -> None:
    cases = [case for test in _load(RULE_TESTS)["tests"] for case in test["alert_rule_test"]]
    for alert in _alerts():
        name = alert["alert"]
        outcomes = [bool(c["exp_alerts"]) for c in cases if c["alertname"] == name]
        assert True in outcomes and False in outcomes, name


def test_the_prometheus_rule_holds_the_same_groups() -> None:
    (rule,) = yaml.safe_load_all(PROMETHEUS_RULE.read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"]["groups"] == _load(RULES)["groups"]  # edit both files together


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: str(a["alert"]))
def test_every_alert_has_a_severity_and_tells_what_to_do(alert: dict[str, Any]) -> None:
    assert alert["alert"].startswith("Custsync")
    assert alert["labels"]["severity"] in {"warning", "critical"}
    summary, description = alert["annotations"]["summary"], alert["annotations"]["description"]
    assert summary.startswith("custsync: ")
    assert "`custsync " in description or "README" in description or "kubectl" in description


@pytest.fixture(scope="module")
def exported(redis_server: EphemeralRedis) -> Iterator[set[str]]:
    client = redis.Redis.from_url(db_url(redis_server, STATE_DB), decode_responses=True)
    yield exported_metric_names(client)
    client.close()


def test_every_alert_reads_metrics_custsync_exports(exported: set[str]) -> None:
    used = {(a["alert"], name) for a in _alerts() for name in metric_names(a["expr"])}
    assert {(alert, name) for alert, name in used if name not in exported | SCRAPE_SERIES} == set()


def test_the_worker_job_the_alerts_name_is_the_service_monitor_s() -> None:
    """The Prometheus Operator names a ServiceMonitor's job after the Service it selects."""
    services = {
        doc["metadata"]["name"]
        for doc in yaml.safe_load_all(SERVICE_MONITORS.read_text())
        if doc["kind"] == "Service"
    }
    jobs = {part.split('"')[1] for alert in _alerts() for part in alert["expr"].split("job=")[1:]}
    assert jobs == {"custsync-worker"} and jobs <= services


def test_the_stalled_alert_finds_a_partner_s_queue_by_its_name() -> None:
    (stalled,) = [a for a in _alerts() if a["alert"] == "CustsyncTargetStalled"]
    found = re.search(r'"queue", "([^"]+)"', stalled["expr"])
    assert found is not None
    pattern = found.group(1)  # label_replace anchors it, as fullmatch does
    partner = re.fullmatch(pattern, partner_queue("minted"))
    assert partner is not None and partner.group(1) == "minted"
    assert re.fullmatch(pattern, QUEUE) is None  # the public queue is no partner's
