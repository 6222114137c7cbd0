"""Celery's heartbeat step, with beats that give up instead of retrying forever.

Celery sends its heartbeat with "retry until the broker answers" on the consumer's own
thread: with a Redis that accepts connections but never answers, that loop never returns
to see the shutdown flag, and SIGTERM is ignored. A missed beat here is buffered by the
event dispatcher and sent later.
"""

from __future__ import annotations

from typing import Any

from celery.worker import heartbeat
from celery.worker.consumer import heart


class _Heart(heartbeat.Heart):  # type: ignore[misc]
    def _send(self, event: str, retry: bool = False) -> Any:
        return super()._send(event, retry=retry)


class Heart(heart.Heart):  # type: ignore[misc]
    def start(self, c: Any) -> None:
        c.heart = _Heart(c.timer, c.event_dispatcher, self.heartbeat_interval)
        c.heart.start()
