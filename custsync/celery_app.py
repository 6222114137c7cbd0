"""The Celery app and its configuration (docs/architecture.md §4); no task, no worker step.

Configuration is read when Celery first needs it, not at import. The task (custsync.tasks)
and the worker's steps and signals (custsync.worker) build on this module.
"""

from __future__ import annotations

import weakref
from typing import Any

from celery import Celery
from kombu.entity import Queue

from custsync.broker.redis_transport import SENTINEL_TRANSPORT
from custsync.broker.redis_transport import TRANSPORT as REDIS_TRANSPORT
from custsync.redis_connect import SentinelUrl, is_sentinel
from custsync.runtime import Runtime, get_runtime
from custsync.state.keys import QUEUE, TASK_NAME, all_queues
from custsync.targets import REGISTRY

app = Celery("custsync", set_as_current=False)


# A producer app's own runtime (its keys and journal, not the environment's), by app.
_runtimes: weakref.WeakKeyDictionary[Any, Runtime] = weakref.WeakKeyDictionary()


def producer_app(runtime: Runtime) -> Celery:
    """A Celery app that only sends, configured from ``runtime`` (tests, tools, embedding)."""
    sender = Celery("custsync-producer", set_as_current=False)
    sender.conf.update(celery_config(runtime))
    _runtimes[sender] = runtime
    return sender


def runtime_of(app: Any) -> Runtime:
    """The runtime a producer app was made from, else this process's."""
    own = _runtimes.get(app) if app is not None else None
    return own if own is not None else get_runtime()


def celery_config(runtime: Runtime) -> dict[str, Any]:
    s = runtime.settings
    broker = s.broker_url or runtime.redis_url
    sentinel = SentinelUrl.parse(broker) if is_sentinel(broker) else None
    if sentinel is not None:
        broker = sentinel.kombu_url()  # kombu wants one URL per sentinel
    return {
        "broker_url": broker,
        "broker_connection_retry_on_startup": True,
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "task_default_queue": QUEUE,
        # A bare `celery worker` (no -Q) consumes the public queue and every partner's.
        "task_queues": [Queue(name) for name in all_queues(REGISTRY)],
        "task_routes": {TASK_NAME: {"queue": QUEUE}},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_soft_shutdown_timeout": 30.0,
        "worker_enable_soft_shutdown_on_idle": True,
        "task_time_limit": s.task_time_limit_s,
        "task_soft_time_limit": max(1.0, s.task_time_limit_s - 5),
        "worker_pool": "threads",
        "worker_concurrency": s.concurrency,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        # Checks every message before Celery reads it: garbage goes to the DLQ, not the worker.
        "worker_consumer": "custsync.broker.consumer:GuardedConsumer",
        "broker_pool_limit": s.concurrency + 4,
        **_broker_specific(broker, s, sentinel),
    }


def _broker_specific(broker: str, s: Any, sentinel: SentinelUrl | None) -> dict[str, Any]:
    """Options that only make sense for one kind of broker."""
    if broker.split(":", 1)[0] in ("amqp", "amqps", "pyamqp"):
        # Quorum queues are replicated and survive a node loss; confirms make publish durable.
        return {
            "task_queues": [
                Queue(name, queue_arguments={"x-queue-type": "quorum"})
                for name in all_queues(REGISTRY)
            ],
            "broker_transport_options": {"confirm_publish": True},
            "worker_detect_quorum_queues": True,
        }
    restore_s = max(1, min(10, int(s.visibility_timeout_s / 2)))
    transport: dict[str, Any] = {}
    failover: dict[str, Any] = {}
    if broker.startswith("redis://") and ";" not in broker:  # TLS: kombu's as is
        transport = {"broker_transport": REDIS_TRANSPORT}
    elif sentinel is not None:  # ours too (garbage-safe), on kombu's sentinel channel
        transport = {"broker_transport": SENTINEL_TRANSPORT}
        failover = {"master_name": sentinel.master}
    return {
        **transport,
        "broker_connection_timeout": s.redis_timeout_s,
        "broker_transport_options": {
            **failover,
            # Without these a Redis that accepts but never answers blocks the worker for good,
            # deaf to SIGTERM (kombu's default is no timeout); a BRPOP waits 1 s, well below.
            "socket_timeout": max(s.redis_timeout_s, 2.0),
            "socket_connect_timeout": s.redis_timeout_s,
            "visibility_timeout": s.visibility_timeout_s,
            # Sweep for messages of dead workers often enough to matter (kombu: ~100 s).
            "unacked_restore_interval": restore_s,
            "unacked_restore_throttle": 1,
            # kombu's sweep lock lasts 300 s: a worker killed mid-sweep would stop every sweep.
            "unacked_mutex_expire": 3 * restore_s,
        },
    }


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    sender.conf.update(celery_config(get_runtime()))
