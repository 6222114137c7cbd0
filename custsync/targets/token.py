"""A bearer token shared by every worker through Redis, renewed by one of them at a time."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from custsync.errors import AuthFailed
from custsync.state.scripts import Scripts


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float  # epoch seconds; the shared copy is already gone from Redis by then


Fetch = Callable[[], tuple[str, float]]  # returns (token, lifetime in seconds)


class SharedToken:
    """Single-flight renewal: one worker fetches, the others wait for its result."""

    def __init__(
        self,
        redis: Any,
        key: str,
        lock_key: str,
        fetch: Fetch,
        *,
        renew_margin_s: float = 60.0,
        lock_ttl_s: float = 30.0,
        on_renew: Callable[[], None] = lambda: None,
    ) -> None:
        self.redis = redis
        self.key = key
        self.lock_key = lock_key
        self.fetch = fetch
        self.renew_margin_s = renew_margin_s
        self.lock_ttl_s = lock_ttl_s
        self.on_renew = on_renew
        self._cached: Token | None = None
        self._mutex = threading.Lock()
        self.scripts = Scripts(redis)

    def get(self) -> str:
        """A valid token, from this process, from Redis, or freshly fetched."""
        cached = self._cached
        if cached and cached.expires_at > time.time():
            return cached.value
        with self._mutex:  # threads of one process share one renewal too
            cached = self._cached
            if cached and cached.expires_at > time.time():
                return cached.value
            token = self._load() or self._renew()
            self._cached = token
            return token.value

    def refused(self, value: str) -> str:
        """The partner refused ``value`` (401): renew once, unless another worker already did."""
        with self._mutex:
            if self._cached and self._cached.value == value:
                self._cached = None
            self.scripts("token_drop", keys={"token": self.key}, args={"value": value})
            token = self._load()
            if token is None or token.value == value:
                token = self._renew()
            self._cached = token
            return token.value

    def _load(self) -> Token | None:
        raw = self.redis.get(self.key)
        if not raw:
            return None
        data = json.loads(raw)
        return Token(data["token"], float(data["expires_at"]))

    def _renew(self, wait_s: float = 30.0) -> Token:
        me = secrets.token_hex(8)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.redis.set(self.lock_key, me, nx=True, px=int(self.lock_ttl_s * 1000)):
                try:
                    return self._fetch_and_share()
                finally:
                    self.scripts("lock_release", keys={"lock": self.lock_key}, args={"holder": me})
            time.sleep(0.05)  # another worker is renewing: wait for its token
            token = self._load()
            if token is not None:
                return token
        raise AuthFailed("token renewal did not finish in time (another worker holds the lock)")

    def _fetch_and_share(self) -> Token:
        value, lifetime_s = self.fetch()
        self.on_renew()
        margin = min(self.renew_margin_s, lifetime_s / 5)  # renew before it expires
        shared_for = max(1.0, lifetime_s - margin)
        token = Token(value, time.time() + shared_for)
        payload = json.dumps({"token": value, "expires_at": token.expires_at})
        self.redis.set(self.key, payload, px=int(shared_for * 1000))
        return token
