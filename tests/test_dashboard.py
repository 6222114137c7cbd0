"""deploy/grafana/custsync-dashboard.json: every query reads metrics custsync really exports
(names taken from its registries and collectors, not from a list), parses as PromQL
(promtool), and the panels operators need are there without overlapping."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from custsync.embedded.server import EphemeralRedis
from tests.conftest import db_url
from tests.promql import SCRAPE_SERIES, exported_metric_names, metric_names
from tests.tools import debian_tool

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "custsync-dashboard.json"
STATE_DB = 30  # read only: the collector's families do not depend on what Redis holds
GRID_COLUMNS = 24
# Grafana's interval variables, as a Prometheus range, so promtool can parse the queries.
GRAFANA_RANGES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def _panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in container.get("panels", []):
        yield panel
        yield from _panels(panel)  # a collapsed row holds its panels


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _exprs() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in _panels(_dashboard())
        for target in panel.get("targets", [])
    ]


@pytest.fixture(scope="module")
def exported(redis_server: EphemeralRedis) -> Iterator[set[str]]:
    client = redis.Redis.from_url(db_url(redis_server, STATE_DB), decode_responses=True)
    yield exported_metric_names(client)
    client.close()


def test_metric_names_are_read_from_expressions_not_functions_or_labels() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (route, le) (rate(a_bucket{x="y(z)"}[$__rate_interval])))'
        " / on (route) group_left () max without (k) (b offset 5m) or vector(1e3)"
    )
    assert metric_names(expr) == {"a_bucket", "b"}


def test_every_query_reads_a_metric_custsync_exports(exported: set[str]) -> None:
    assert "custsync_retry_oldest_age_seconds" in exported  # the Redis collector answered
    assert "custsync_ingest_events_total" in exported  # and custsync serve's registry is in
    unknown = {
        (title, name)
        for title, expr in _exprs()
        for name in metric_names(expr)
        if name not in exported | SCRAPE_SERIES
    }
    assert unknown == set()


def test_the_panels_cover_flow_failures_retries_partners_ingest_and_workers() -> None:
    used = {name for _, expr in _exprs() for name in metric_names(expr)}
    assert {
        "custsync_events_total",
        "custsync_dead_letters_total",
        "custsync_dlq_entries",
        "custsync_dlq_oldest_age_seconds",
        "custsync_retry_set_size",
        "custsync_retry_oldest_age_seconds",
        "custsync_breaker_state",
        "custsync_partner_request_duration_seconds_bucket",
        "custsync_publish_to_applied_seconds_bucket",
        "custsync_ingest_events_total",
        "up",
    } <= used
    quantiles = [expr for _, expr in _exprs() if "histogram_quantile(" in expr]
    for histogram in ("partner_request_duration", "publish_to_applied"):
        for q in ("0.5", "0.99"):
            assert any(f"({q}," in e and histogram in e for e in quantiles), (histogram, q)


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    rules = []
    for i, (_, expr) in enumerate(_exprs()):
        query = expr
        for variable, window in GRAFANA_RANGES.items():
            query = query.replace(variable, window)
        rules.append({"record": f"dashboard_query_{i}", "expr": query})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run(
        [debian_tool("promtool", "prometheus"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_panels_use_the_datasource_variable_and_do_not_overlap() -> None:
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    panels = list(_panels(dashboard))
    assert len({p["id"] for p in panels}) == len(panels)
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= GRID_COLUMNS, panel["title"]
        cells = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
