"""Fault injection: target-wide faults and per-customer scripted answers.

Faults apply only after a request authenticated. Order: latency, outage, the
Retry-After window of an earlier 429, the customer's script, error_rate,
throttle_rate. Partners render an :class:`Interrupt` in their own body format.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULTS: dict[str, Any] = {
    "error_rate": 0.0,
    "error_status": 503,
    "latency_ms": 0.0,
    "latency_jitter_ms": 0.0,
    "throttle_rate": 0.0,
    "retry_after_s": 1,
    "outage_s": 0.0,
    "outage_status": 503,
    "outage_mode": "status",
    "early_grace_ms": 100.0,  # requests already on the wire when the 429 left are not "early"
}
EXTRA_KEYS: dict[str, dict[str, Any]] = {"minted": {}, "vendor": {"token_ttl_s": None}}
SOFT_FAILURE_TARGETS = ("minted",)  # targets whose 200 may say success: false
SCRIPT_KEYS = ("status", "retry_after", "message", "success", "code", "delay_s", "reset")


class FaultError(ValueError):
    """A fault setting or script item is invalid; the message names it."""


@dataclass(slots=True)
class Reply:
    """What a handler answers; ``reset`` closes the connection without an answer."""

    status: int
    body: Any = None
    headers: dict[str, str] | None = None
    reset: bool = False
    applied: bool = False
    early: bool = False
    token_issued: bool = False


@dataclass(slots=True)
class Interrupt:
    """A fault's or script's answer, before the partner renders it."""

    status: int = 0
    message: str = ""
    retry_after_s: int | None = None
    reset: bool = False
    early: bool = False
    code: int | None = None  # set for a 200 that says success: false
    delay_s: float = 0.0  # sleep, then handle normally


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _rate(key: str, value: Any) -> float:
    if not _is_number(value) or not 0 <= value <= 1:
        raise FaultError(f"fault {key} must be a number from 0 to 1, got {value!r}")
    return float(value)


def _status(key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 400 <= value <= 599:
        raise FaultError(f"fault {key} must be an HTTP status from 400 to 599, got {value!r}")
    return value


def _non_negative(key: str, value: Any) -> float:
    if not _is_number(value) or value < 0:
        raise FaultError(f"fault {key} must be a number >= 0, got {value!r}")
    return float(value)


def _positive(key: str, value: Any) -> float:
    if not _is_number(value) or value <= 0:
        raise FaultError(f"fault {key} must be a number > 0, got {value!r}")
    return float(value)


def _seconds(key: str, value: Any) -> int:
    if not _is_number(value) or value < 0 or value != int(value):
        raise FaultError(f"fault {key} must be a whole number of seconds >= 0, got {value!r}")
    return int(value)


def _mode(key: str, value: Any) -> str:
    if value not in ("status", "reset"):
        raise FaultError(f"fault {key} must be 'status' or 'reset', got {value!r}")
    return str(value)


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "error_rate": _rate,
    "error_status": _status,
    "latency_ms": _non_negative,
    "latency_jitter_ms": _non_negative,
    "throttle_rate": _rate,
    "retry_after_s": _seconds,
    "outage_s": _non_negative,
    "outage_status": _status,
    "outage_mode": _mode,
    "early_grace_ms": _non_negative,
    "token_ttl_s": _positive,
}


def check_faults(target: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Validated, normalised copy of ``values``; raises FaultError naming the bad key."""
    known = [*DEFAULTS, *EXTRA_KEYS[target]]
    checked = {}
    for key, value in values.items():
        if key not in known:
            raise FaultError(f"unknown fault key {key!r} for {target} (known: {', '.join(known)})")
        checked[key] = _CHECKS[key](key, value)
    return checked


def parse_script_item(target: str, item: Any) -> Interrupt:
    """One scripted answer; raises FaultError saying what is wrong with it."""
    if not isinstance(item, dict):
        raise FaultError(f"script item must be an object, got {item!r}")
    unknown = sorted(set(item) - set(SCRIPT_KEYS))
    if unknown:
        raise FaultError(f"unknown script key {unknown[0]!r} (known: {', '.join(SCRIPT_KEYS)})")
    if "delay_s" in item:
        if len(item) != 1:
            raise FaultError("a delay_s script item takes no other key")
        return Interrupt(delay_s=_non_negative("delay_s", item["delay_s"]))
    if "reset" in item:
        if item != {"reset": True}:
            raise FaultError("a reset script item is exactly {'reset': true}")
        return Interrupt(reset=True)
    status = item.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise FaultError(f"script status must be an HTTP status from 200 to 599, got {status!r}")
    message = item.get("message", "scripted response")
    if not isinstance(message, str):
        raise FaultError(f"script message must be a string, got {message!r}")
    code = None
    if status < 300:
        if target not in SOFT_FAILURE_TARGETS or item.get("success") is not False:
            raise FaultError(f"a scripted {status} must be a minted answer with success: false")
        code = item.get("code", 1)
        if not isinstance(code, int) or isinstance(code, bool):
            raise FaultError(f"script code must be an integer, got {code!r}")
    elif "success" in item or "code" in item:
        raise FaultError("success and code only go with a scripted 200")
    retry_after = None
    if "retry_after" in item:
        if status != 429:
            raise FaultError("retry_after only goes with status 429")
        retry_after = _seconds("retry_after", item["retry_after"])
    return Interrupt(status=status, message=message, retry_after_s=retry_after, code=code)


class _TargetState:
    __slots__ = ("config", "outage_until", "throttled_since", "throttled_until")

    def __init__(self, target: str) -> None:
        self.config: dict[str, Any] = {**DEFAULTS, **EXTRA_KEYS[target]}
        self.outage_until = 0.0
        self.throttled_until = 0.0
        self.throttled_since = 0.0


class Faults:
    """Per-target fault settings, their runtime windows and per-customer scripts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random()
        self._state = {t: _TargetState(t) for t in EXTRA_KEYS}
        self._scripts: dict[tuple[str, str], deque[Interrupt]] = {}

    def reset(self) -> None:
        with self._lock:
            self._state = {t: _TargetState(t) for t in EXTRA_KEYS}
            self._scripts.clear()

    def configure(self, target: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Merge settings (all or none); a given outage_s starts counting now."""
        checked = check_faults(target, values)
        with self._lock:
            state = self._state[target]
            state.config.update(checked)
            if "outage_s" in checked:
                state.outage_until = time.monotonic() + checked["outage_s"]
        return self.snapshot(target)

    def clear(self, target: str) -> dict[str, Any]:
        with self._lock:
            self._state[target] = _TargetState(target)
        return self.snapshot(target)

    def snapshot(self, target: str) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            state = self._state[target]
            return {
                **state.config,
                "outage_remaining_s": round(max(0.0, state.outage_until - now), 3),
                "throttled_remaining_s": round(max(0.0, state.throttled_until - now), 3),
            }

    def value(self, target: str, key: str) -> Any:
        return self._state[target].config[key]

    def add_script(self, target: str, customer_id: str, items: Iterable[Any]) -> int:
        parsed = [parse_script_item(target, item) for item in items]
        with self._lock:
            queue = self._scripts.setdefault((target, customer_id), deque())
            queue.extend(parsed)
            return len(queue)

    def pending(self, target: str, customer_id: str) -> int:
        with self._lock:
            return len(self._scripts.get((target, customer_id), ()))

    def gate(self, target: str, customer_id: str | None, *, full: bool = True) -> Interrupt | None:
        """The fault answering this request, or None to handle it normally.

        ``full=False`` (token calls) applies only latency and outages.
        """
        state = self._state[target]
        config = state.config
        latency, jitter = config["latency_ms"], config["latency_jitter_ms"]
        if latency or jitter:
            time.sleep(max(0.0, latency + self._rng.uniform(-jitter, jitter)) / 1000)
        now = time.monotonic()
        with self._lock:
            if state.outage_until > now:
                mode_reset = config["outage_mode"] == "reset"
                return Interrupt(config["outage_status"], "sandbox outage", reset=mode_reset)
            if not full:
                return None
            if state.throttled_until > now:
                wait = max(1, math.ceil(state.throttled_until - now))
                early = now - state.throttled_since > config["early_grace_ms"] / 1000
                return Interrupt(429, "too many requests", retry_after_s=wait, early=early)
            queue = self._scripts.get((target, customer_id)) if customer_id is not None else None
            item = queue.popleft() if queue else None
            if item is not None and item.status == 429:
                if item.retry_after_s is None:
                    item.retry_after_s = config["retry_after_s"]
                self._throttle(state, item.retry_after_s, now)
        if item is not None:
            if not item.delay_s:
                return item
            time.sleep(item.delay_s)
        if config["error_rate"] and self._rng.random() < config["error_rate"]:
            return Interrupt(config["error_status"], "sandbox fault: injected error")
        if config["throttle_rate"] and self._rng.random() < config["throttle_rate"]:
            wait = config["retry_after_s"]
            with self._lock:
                self._throttle(state, wait, time.monotonic())
            return Interrupt(429, "too many requests", retry_after_s=wait)
        return None

    @staticmethod
    def _throttle(state: _TargetState, retry_after_s: int, now: float) -> None:
        if state.throttled_until <= now:
            state.throttled_since = now
        state.throttled_until = max(state.throttled_until, now + retry_after_s)
