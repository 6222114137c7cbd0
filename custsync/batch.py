"""Running the events of one batch message: each customer's events one after another in
version order, customers side by side on the worker's item threads. ``run`` returns when
every event has landed, so the message is acknowledged only then."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any, TypeVar

import redis

from custsync.broker.contract import TaskCall

T = TypeVar("T")

_lock = threading.Lock()
stopping = threading.Event()  # the worker is shutting down: start no more events


class NotStarted(Exception):
    """An event of the batch left unstarted (shutdown, or Redis failed before it)."""


_threads = 8  # the worker's concurrency, set when it starts (``use_threads``)
_pool: ThreadPoolExecutor | None = None


def use_threads(count: int) -> None:
    """As many item threads as the worker has task threads: the partner sees at most that
    many calls per worker from batches."""
    global _threads
    _threads = max(1, int(count))


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_threads, thread_name_prefix="custsync-item")
        return _pool


def version_order(envelope: Any) -> tuple[float, int]:
    """(occurred_at, sequence) as the version guard orders them; unreadable ones first (they
    are dead-lettered as invalid whatever their place)."""
    if not isinstance(envelope, Mapping):
        return (float("-inf"), 0)
    try:
        occurred = datetime.fromisoformat(str(envelope.get("occurred_at"))).timestamp()
    except (ValueError, OverflowError, OSError):
        return (float("-inf"), 0)
    sequence = envelope.get("sequence", 0)
    return (occurred, sequence if type(sequence) is int else 0)


def chains(calls: Sequence[TaskCall]) -> list[list[int]]:
    """Positions of ``calls`` per customer (target, customer id), each in version order."""
    by_customer: dict[Any, list[int]] = {}
    for i, call in enumerate(calls):
        env = call.envelope
        target = env.get("target") if isinstance(env, Mapping) else None
        customer = env.get("customer_id") if isinstance(env, Mapping) else None
        if isinstance(target, str) and isinstance(customer, str):
            by_customer.setdefault((target, customer), []).append(i)
        else:  # an invalid envelope: on its own
            by_customer[("", i)] = [i]
    return [
        sorted(positions, key=lambda i: version_order(calls[i].envelope))
        for positions in by_customer.values()
    ]


def run(
    calls: Sequence[TaskCall], apply: Callable[[TaskCall], T], *, one_by_one: bool = False
) -> list[T | BaseException]:
    """Apply every call; each position holds its result or the exception it raised. A Redis
    error ends its customer's chain there (the message goes back on the queue whole).
    ``one_by_one``: every chain in this thread, one after another."""
    results: list[T | BaseException | None] = [None] * len(calls)
    unreached = redis.RedisError("not reached: Redis failed for an earlier event")

    def chain(positions: list[int]) -> None:
        for n, i in enumerate(positions):
            if stopping.is_set():  # the calls in flight finish; the rest is redelivered
                for j in positions[n:]:
                    results[j] = NotStarted("the worker is shutting down")
                return
            try:
                results[i] = apply(calls[i])
            except BaseException as exc:
                results[i] = exc
                if isinstance(exc, redis.RedisError):
                    for j in positions[n + 1 :]:
                        results[j] = unreached
                    return

    groups = chains(calls)
    if len(groups) == 1 or one_by_one:  # no hand-over to another thread
        for positions in groups:
            chain(positions)
    else:
        todo = deque(groups)

        def drain() -> None:  # one future per item thread, not per customer (~5 % of CPU)
            while True:
                try:
                    positions = todo.popleft()  # atomic: each chain is taken once
                except IndexError:
                    return
                chain(positions)

        wait([_executor().submit(drain) for _ in range(min(_threads, len(groups)))])
    return [r if r is not None else unreached for r in results]
