"""The objects a process needs, built once from settings: Redis, targets, stores."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from custsync import observability
from custsync.dlq.retention import RetentionPolicy
from custsync.dlq.store import DlqStore
from custsync.embedded.server import EmbeddedRedis, default_data_dir
from custsync.redis_connect import connect
from custsync.settings import Settings, load_settings
from custsync.state.keys import Keys
from custsync.state.retryset import RetrySet
from custsync.state.scripts import Scripts
from custsync.targets import REGISTRY
from custsync.targets.base import Target


def resolve_redis_url(settings: Settings) -> str:
    """The configured Redis, or the embedded one started on demand (README, "Configuration")."""
    if settings.redis_url:
        return settings.redis_url
    url = EmbeddedRedis(settings.data_dir or default_data_dir()).ensure_running()
    return url.rsplit("/", 1)[0] + f"/{settings.embedded_db}"


@dataclass
class Runtime:
    settings: Settings
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def keys(self) -> Keys:
        return self.settings.keys

    @cached_property
    def redis_url(self) -> str:
        return resolve_redis_url(self.settings)

    @cached_property
    def redis(self) -> Any:
        # Pool larger than the thread pool plus the poller, so no thread waits for a socket.
        return connect(
            self.redis_url,
            decode_responses=True,
            max_connections=self.settings.concurrency * 2 + 8,
            health_check_interval=30,
            socket_connect_timeout=self.settings.redis_timeout_s,
            socket_timeout=self.settings.redis_timeout_s,
        )

    @cached_property
    def targets(self) -> dict[str, Target]:
        return {
            name: REGISTRY[name](
                cfg,
                self.redis,
                self.keys,
                trust_env=self.settings.trust_env,
                response_max_bytes=self.settings.response_max_bytes,
                metrics=_ObservedTargets(),
            )
            for name, cfg in self.settings.targets.items()
        }

    @cached_property
    def dlq(self) -> DlqStore:
        return DlqStore(self.redis, self.keys, RetentionPolicy.from_settings(self.settings))

    @property
    def broker_shares_state_redis(self) -> bool:
        """Whether the broker queue lives in the state Redis (one script can touch both;
        kombu's lists and the journal are there). The one place this is decided."""
        url = self.settings.broker_url
        return url is None or url == self.redis_url

    @cached_property
    def scripts(self) -> Scripts:
        return Scripts(self.redis)

    @cached_property
    def retry_set(self) -> RetrySet:
        return RetrySet(self.redis, self.keys)


class _ObservedTargets:
    """Forwards a target's reports to the process's metrics (off unless configured)."""

    def partner_call(self, target: str, status: int | None, duration_s: float) -> None:
        observability.record_partner_call(target, status, duration_s)

    def token_renewal(self, target: str) -> None:
        observability.record_token_renewal(target)


_current: Runtime | None = None
_current_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process-wide runtime, built on first use (no environment read at import)."""
    global _current
    if _current is None:
        with _current_lock:
            if _current is None:
                _current = Runtime(load_settings())
    return _current


def set_runtime(runtime: Runtime | None) -> None:
    """For tests and embedding: use these settings instead of the environment."""
    global _current
    with _current_lock:
        _current = runtime
