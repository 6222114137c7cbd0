"""kombu's Redis transport, reusing one client per connection pool.

kombu builds a fresh ``redis.Redis`` for every acknowledgement, unacked-record and task
event it writes; each one copies redis-py's table of response callbacks, about a tenth of
a worker's CPU (bench/apply_throughput with ``--profile``). A client on a connection pool
is thread-safe, so one per pool does the same work. Selected by ``celery_config`` for
plain ``redis://`` brokers; everything else is kombu's own code.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _reused: tuple[Any, Any] | None = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the event loop's own client and pub/sub stay kombu's
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        pool = self.pool
        reused = self._reused
        if reused is None or reused[0] is not pool:  # a reconnect replaces the pool
            reused = self._reused = (pool, super()._create_client())  # type: ignore[no-untyped-call]
        return reused[1]


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"
