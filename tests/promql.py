"""Metric names: those a PromQL expression reads, and those custsync really exports, taken
from its own registries and collectors (the worker's against a real Redis, the server's)."""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)

from custsync.http import metrics as http_metrics
from custsync.observability.collector import RedisStateCollector
from custsync.observability.metrics import Metrics
from custsync.state.keys import Keys
from custsync.targets import REGISTRY as TARGETS

# Written by Prometheus itself for every scrape target, not by an exporter.
SCRAPE_SERIES = frozenset({"up"})

# What each metric type exposes beyond its family name (prometheus_client's text format).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "gauge": ("",),
    "unknown": ("",),
}
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: not functions, keywords, labels or ranges."""
    text = _STRINGS.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries, Grafana's $__rate_interval
    text = _LABEL_LISTS.sub("", text)
    text = re.sub(r"#[^\n]*", "", text)  # PromQL comments
    names = set()
    for match in _NAME.finditer(text):
        name = match.group()
        if text[match.end() :].lstrip().startswith("(") or name.lower() in _KEYWORDS:
            continue  # a function call or aggregation
        if re.fullmatch(r"\d", text[match.start() - 1 : match.start()] or " "):
            continue  # the exponent or unit of a number (1e3, 5m)
        names.add(name)
    return names


def _exposed(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
        names |= {sample.name for sample in family.samples}
    return names


def exported_metric_names(state_redis: Any) -> set[str]:
    """Every series name a worker's and custsync serve's /metrics can show."""
    worker = CollectorRegistry()
    Metrics(worker, TARGETS)
    thresholds = dict.fromkeys(TARGETS, 5)
    worker.register(RedisStateCollector(state_redis, Keys(), thresholds, queue_in_redis=True))
    for default in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        worker.register(default)  # the worker serves prometheus_client's default registry
    return _exposed(worker) | _exposed(http_metrics.REGISTRY)
