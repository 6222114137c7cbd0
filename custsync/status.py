"""What ``custsync status`` and ``GET /v1/status`` report: per target the queue, retries,
DLQ, pause, breaker and last success, read in a few pipelined round trips."""

from __future__ import annotations

import json
import time
from typing import Any

from custsync.celery_app import producer_app
from custsync.dlq.replay import uses_atomic_move
from custsync.dlq.stats import by_target_reason
from custsync.embedded.server import mask_url
from custsync.runtime import Runtime
from custsync.state.breaker import Breaker
from custsync.state.keys import QUEUE, UNACKED, all_queues, partner_queue
from custsync.targets import REGISTRY


def queue_state(rt: Runtime) -> dict[str, Any]:
    """Depth of the public queue and each partner's (and, on Redis, messages held by
    workers, which kombu counts for all queues together)."""
    names = all_queues(REGISTRY)
    if uses_atomic_move(rt):
        pipe = rt.redis.pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
        pipe.hlen(UNACKED)
        *depths, held = pipe.execute()
        return _queues(dict(zip(names, map(int, depths), strict=True)), int(held))
    broker = rt.settings.broker_url or ""
    try:
        with producer_app(rt).connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)
            depths = {n: _declared(conn, n) for n in names}
        return _queues(depths, None)
    except Exception as exc:  # any transport's failure: report it, keep the rest of the status
        error = f"cannot reach the broker at {mask_url(broker)}: {type(exc).__name__}"
        return {"name": QUEUE, "waiting": None, "in_progress": None, "error": error, "queues": {}}


def _declared(conn: Any, name: str) -> int:
    """A queue's depth on a broker that counts (0 for one nobody declared yet)."""
    try:
        return int(conn.default_channel.queue_declare(queue=name, passive=True).message_count)
    except conn.channel_errors:
        return 0


def _queues(depths: dict[str, int], held: int | None) -> dict[str, Any]:
    total = sum(depths.values())
    return {"name": QUEUE, "waiting": total, "in_progress": held, "queues": depths}


def breaker_state(fields: dict[str, str], threshold: int, now: float) -> dict[str, Any]:
    """The breaker as the poller and the pipeline read it: a state word, not its raw hash
    (whose c:<customer> fields name failing customers: counted, never shown)."""
    breaker = Breaker.read(fields, threshold, now)
    return {
        "state": breaker.state.value,
        "failing_customers": breaker.failures,
        "threshold": threshold,
        "open_until": breaker.opened_until,
    }


def target_state(rt: Runtime, name: str, dlq: dict[str, int], now: float) -> dict[str, Any]:
    keys = rt.keys
    pipe = rt.redis.pipeline(transaction=False)
    pipe.get(keys.pause(name))
    pipe.hgetall(keys.breaker(name))
    pipe.get(keys.last_success(name))
    pause_raw, breaker, last = pipe.execute()
    pause = json.loads(pause_raw) if pause_raw else None
    if pause and float(pause.get("until", 0)) <= now:
        pause = None  # expired but not yet evicted
    return {
        "retry": {"size": rt.retry_set.size(name), "next_due": rt.retry_set.next_due(name)},
        "dlq": dlq,
        "paused": pause,
        "breaker": breaker_state(breaker, rt.settings.targets[name].breaker.failures, now),
        "last_success": float(last) if last else None,
    }


def collect(rt: Runtime) -> dict[str, Any]:
    now = time.time()
    names = sorted(rt.settings.targets)
    counts = by_target_reason(rt.dlq, sorted({*names, *rt.dlq.values("target")}))
    queue = queue_state(rt)
    targets = {n: target_state(rt, n, counts.pop(n, {}), now) for n in names}
    for name, state in targets.items():
        state["queued"] = queue["queues"].get(partner_queue(name))
    return {
        "redis": mask_url(rt.redis_url),
        "queue": queue,
        "targets": targets,
        "dlq_total": rt.dlq.count(),
        "dlq_other": counts,  # entries of unconfigured or missing targets
    }
