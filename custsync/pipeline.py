"""The pipeline: one delivery of one event, through the README's answer table.

Plain code, no Celery: the task decodes and calls ``Pipeline.process``. Custsync's own
Redis work for an applied event is two round trips: preflight and after_success.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import replace
from typing import Any

from custsync import observability
from custsync.backoff import full_jitter
from custsync.delivery import Delivery
from custsync.errors import (
    AuthFailed,
    CustsyncError,
    InvalidEvent,
    PartnerUnavailable,
    PermanentError,
    Throttled,
    TransientError,
)
from custsync.landing import Arrival, Job, Landing, mask
from custsync.outcomes import Outcome, Result
from custsync.runtime import Runtime
from custsync.state.guard import (
    FailureState,
    Gate,
    GateVerdict,
    Limits,
    StateScripts,
    guarded_fields,
    version_string,
)
from custsync.targets.base import Target
from custsync.validation import validate_event

log = logging.getLogger("custsync.pipeline")

AUTH_PAUSE_MAX_S = 60.0  # how long a misconfigured target rests before the next try
LOCKED_RETRY_S = 0.25  # another event of this customer is at the partner: look again soon
PROBING_RETRY_S = 1.0  # the breaker's probe is out: its answer decides
RATE_MAX_SLEEP_MS = 250  # wait this long in the thread for a rate slot; longer waits defer
BREAKER_COUNTS, BREAKER_RESETS, BREAKER_NEUTRAL = 1, 0, 2


class Pipeline:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.keys = runtime.keys
        self.redis = runtime.redis
        self.state = StateScripts(self.redis, self.keys)
        self.land = Landing(runtime)

    def process(self, raw: Any, delivery: Delivery) -> Result:
        started = time.perf_counter()
        try:
            event = validate_event(raw, self.rt.settings)
        except InvalidEvent as exc:
            return self.land.dead_letter(Arrival(raw, delivery, started), exc, delivery)
        target = self.rt.targets[event.target]
        # The holder is unique per delivery: a duplicate running elsewhere must not share it.
        holder = f"{event.event_id}#{secrets.token_hex(6)}"
        job = Job(raw, delivery, started, event, target, version_string(event), holder)
        gate = self.state.preflight(
            target=event.target,
            customer_id=event.customer_id,
            event_id=event.event_id,
            holder=job.holder,
            version=job.version,
            check_version=not delivery.force,
            field_level=target.field_level,
            fields=guarded_fields(event, target.field_level, target.always_sent),
            limits=self._limits(target),
        )
        if gate.verdict is not GateVerdict.OK:
            return self._not_now(job, gate)
        if gate.wait_s > 0:
            time.sleep(gate.wait_s)  # a reserved slot of the shared rate limit
        if gate.stale_fields:  # a newer change already wrote these: send the rest
            kept = {k: v for k, v in event.changes.items() if k not in gate.stale_fields}
            job = replace(job, event=replace(event, changes=kept))
        return self._attempt(job)

    def _limits(self, target: Target) -> Limits:
        cfg = target.config
        call_s = 2 * (cfg.connect_timeout_s + cfg.read_timeout_s) + 10  # a 401 doubles the call
        lock_ms = int(min(self.rt.settings.task_time_limit_s, call_s) * 1000)
        return Limits(
            lock_ms=lock_ms,
            rate_per_s=cfg.rate_limit_per_s,
            max_sleep_ms=RATE_MAX_SLEEP_MS,
            breaker_failures=cfg.breaker.failures,
            probe_ms=lock_ms,
            poison_deliveries=self.rt.settings.poison_deliveries,
            deliveries_ttl_s=self.rt.settings.ledger_ttl_s,
        )

    def _not_now(self, job: Job, gate: Gate) -> Result:
        if gate.verdict in (GateVerdict.DUPLICATE, GateVerdict.SUPERSEDED):
            outcome = Outcome(gate.verdict)
            return self.land.result(outcome, job, job.delivery.attempts, reason=gate.detail)
        if gate.verdict is GateVerdict.POISON:
            exc = PermanentError(f"delivered {gate.detail} times without finishing")
            deliveries = self.keys.deliveries(job.event.event_id)
            return self.land.dead_letter(
                job, exc, job.delivery, reason="poison", extra=lambda p: p.delete(deliveries)
            )
        cap = {GateVerdict.LOCKED: LOCKED_RETRY_S, GateVerdict.PROBING: PROBING_RETRY_S}.get(
            gate.verdict
        )
        wait = gate.wait_s if cap is None else min(gate.wait_s, cap)
        return self.land.defer(job, time.time() + wait, reason=gate.verdict.value)

    def _attempt(self, job: Job) -> Result:
        try:
            applied = job.target.apply(job.event)
        except PermanentError as exc:
            self._failed(job, BREAKER_RESETS)
            spent = job.delivery.with_attempts(job.delivery.attempts + 1)
            return self.land.dead_letter(job, exc, spent)
        except Throttled as exc:
            wait = min(max(exc.retry_after_s, 0.0), self.rt.settings.retry_after_max_s)
            _, until = self._failed(job, BREAKER_NEUTRAL, wait, "throttled")
            return self.land.defer(job, until, reason="throttled", status=429)
        except AuthFailed as exc:
            return self._auth_failed(job, exc)
        except TransientError as exc:
            return self._transient(job, exc)
        except CustsyncError as exc:  # a new kind of error: treat as transient, never drop
            return self._transient(job, PartnerUnavailable(str(exc)))
        except Exception as exc:  # a bug or a library surprise: retry, and say so loudly
            log.exception("unexpected error applying %s", job.event.event_id)
            error = PartnerUnavailable(f"unexpected {type(exc).__name__}")
            return self._transient(job, error, BREAKER_NEUTRAL)
        event = job.event
        self.state.after_success(
            self.redis,  # one EVALSHA; a pipeline would first send SCRIPT EXISTS
            target=event.target,
            customer_id=event.customer_id,
            new_customer_id=applied.customer_id,
            event_id=event.event_id,
            holder=job.holder,
            version=job.version,
            field_level=job.target.field_level,
            sent_fields=[f for f in event.changes if f not in job.target.always_sent],
            now=time.time(),
            ledger_ttl_s=self.rt.settings.ledger_ttl_s,
            version_ttl_s=max(self.rt.settings.ledger_ttl_s, 30 * 86_400),
        )
        attempt = job.delivery.attempts + 1
        return self.land.result(Outcome.APPLIED, job, attempt, status=applied.status)

    def _failed(
        self, job: Job, breaker: int, pause_s: float = 0.0, why: str = ""
    ) -> tuple[FailureState, float]:
        """Release the customer, count toward the breaker; returns (breaker state, pause end)."""
        target = job.event.target
        policy = job.target.config.breaker
        raw_state, until = self.state.after_failure(
            self.redis,
            target=target,
            customer_id=job.event.customer_id,
            event_id=job.event.event_id,
            holder=job.holder,
            breaker=breaker,
            limits_failures=policy.failures,
            cooldown_ms=int(policy.cooldown_s * 1000),
            cooldown_max_ms=int(policy.cooldown_max_s * 1000),
            pause_ms=int(pause_s * 1000),
            pause_reason=why,
            first_seen_at=job.delivery.first_seen_at,
        )
        state = FailureState(raw_state)
        if state is FailureState.OPENED:
            log.error(
                "%s: breaker opened after %d customers failed in a row; target paused",
                target,
                policy.failures,
                extra={
                    "custsync": {"target": target, "breaker": "open"},
                    **observability.REPORTED,  # the alert is report_breaker_opened's, once
                },
            )
            observability.report_breaker_opened(target, policy.failures)
        return state, float(until)

    def _auth_failed(self, job: Job, exc: AuthFailed) -> Result:
        policy = job.target.config.retry
        pause_s = min(AUTH_PAUSE_MAX_S, policy.backoff_cap_s)
        _, until = self._failed(job, BREAKER_COUNTS, pause_s, "auth")
        if job.delivery.age_s(time.time()) >= policy.max_age_s:
            return self.land.dead_letter(job, exc, job.delivery, reason="auth")
        log.error(
            "%s refused our credentials; target paused",
            job.event.target,
            extra={"custsync": {"target": job.event.target, "status": exc.status}},
        )
        return self.land.defer(job, until, reason="auth", status=exc.status)

    def _transient(self, job: Job, exc: TransientError, breaker: int = BREAKER_COUNTS) -> Result:
        policy = job.target.config.retry
        state, until = self._failed(job, breaker)
        now = time.time()
        too_old = job.delivery.age_s(now) >= policy.max_age_s
        if state in (FailureState.OPEN, FailureState.OPENED) and not too_old:
            # The partner is down, not this event: wait for the breaker, keep the attempts.
            return self.land.defer(job, until, reason="breaker", status=exc.status)
        spent = job.delivery.with_attempts(job.delivery.attempts + 1)
        # "suspect": nobody else succeeded since this event began failing, so the partner may
        # be down. Keep the last attempt and look again later (the age budget still ends it);
        # Before that, it waits at least a breaker cooldown between attempts, so an outage's
        # first customers do not spend their attempts before the breaker opens.
        suspect_wait_s = max(job.target.config.breaker.cooldown_s, policy.backoff_cap_s)
        suspect = state is FailureState.SUSPECT
        if spent.attempts >= policy.max_attempts and suspect and not too_old:
            return self.land.defer(
                job, now + suspect_wait_s, reason="unconfirmed", status=exc.status
            )
        if spent.attempts >= policy.max_attempts or too_old:
            return self.land.dead_letter(job, exc, spent, reason="exhausted")
        delay = full_jitter(spent.attempts, policy.backoff_base_s, policy.backoff_cap_s)
        if suspect:
            delay = max(delay, job.target.config.breaker.cooldown_s)
        error = mask(str(exc), job)
        return self.land.wait(
            job, Outcome.RETRY_SCHEDULED, spent, now + delay, status=exc.status, error=error
        )
