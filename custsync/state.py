"""The per-event Redis steps, each one atomic script (DESIGN §5).

``preflight`` decides whether an event may go to the partner now (ledger, version guard,
pause and breaker, in-flight lock, shared rate limit, poison counter) and takes the lock;
``after_success`` records the ledger and versions and releases; ``after_failure`` releases
and counts toward the breaker. One round trip each, so two workers can never both pass
the guard for one customer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from custsync.keys import Keys

_PREFLIGHT = """
local event_id = string.match(ARGV[1], '^(.*)#[^#]*$')
local function done(outcome)
  redis.call('HINCRBY', KEYS[9], outcome, 1)
  redis.call('ZREM', KEYS[10], event_id)
  redis.call('HDEL', KEYS[11], event_id)
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  done('duplicate')
  return {'duplicate'}
end
local version = ARGV[2]
local stale = {}
if ARGV[3] == '1' then
  local renamed_at = redis.call('HGET', KEYS[2], '_renamed_at')
  if renamed_at and renamed_at > version then
    done('superseded')
    return {'superseded', 'renamed'}
  end
  if ARGV[4] == '0' then
    local v = redis.call('HGET', KEYS[2], '_v')
    if v and v > version then
      done('superseded')
      return {'superseded', 'event'}
    end
  else
    local left = 0
    for i = 13, #ARGV do
      local v = redis.call('HGET', KEYS[2], 'f:' .. ARGV[i])
      if v and v > version then stale[#stale + 1] = ARGV[i] else left = left + 1 end
    end
    if left == 0 and #stale > 0 then
      done('superseded')
      return {'superseded', 'fields'}
    end
  end
end
local pause_ms = redis.call('PTTL', KEYS[4])
if pause_ms > 0 then return {'paused', pause_ms, redis.call('GET', KEYS[4])} end
local probe = 0
local failures = tonumber(redis.call('HGET', KEYS[5], 'failures') or '0')
if failures >= tonumber(ARGV[8]) then
  local holder = redis.call('GET', KEYS[6])
  if holder and holder ~= ARGV[1] then return {'probing', redis.call('PTTL', KEYS[6])} end
  if redis.call('HEXISTS', KEYS[5], 'c:' .. ARGV[12]) == 1 then
    -- This customer failed since the last success: it probes only if no other comes forward.
    local t = redis.call('TIME')
    local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
    local b = redis.call('HMGET', KEYS[5], 'half_at', 'opened_at', 'opened_until')
    local since = tonumber(b[1] or '0')
    if since == 0 then
      since = now
      redis.call('HSET', KEYS[5], 'half_at', string.format('%.3f', now))
    end
    local grace = 1 + 0.3 * (tonumber(b[3] or '0') - tonumber(b[2] or '0'))
    if now - since < grace then return {'probing', math.ceil((since + grace - now) * 1000)} end
  end
  redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[9])
  probe = 1
end
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[1] then
  if probe == 1 then redis.call('DEL', KEYS[6]) end
  return {'locked', redis.call('PTTL', KEYS[3])}
end
local sleep_ms = 0
local rate = tonumber(ARGV[6])
if rate > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
  local tat = tonumber(redis.call('GET', KEYS[7]) or '0')
  if tat < now then tat = now end
  local wait = tat - now
  if wait > tonumber(ARGV[7]) then
    if probe == 1 then redis.call('DEL', KEYS[6]) end
    return {'rate', math.ceil(wait)}
  end
  local interval = 1000 / rate
  local ttl = math.ceil(wait + interval) + 1000
  redis.call('SET', KEYS[7], string.format('%.3f', tat + interval), 'PX', ttl)
  sleep_ms = wait
end
local deliveries = redis.call('INCR', KEYS[8])
redis.call('EXPIRE', KEYS[8], ARGV[11])
if deliveries > tonumber(ARGV[10]) then
  if probe == 1 then redis.call('DEL', KEYS[6]) end
  return {'poison', deliveries}
end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[5])
local out = {'ok', string.format('%.3f', sleep_ms), probe}
for i = 1, #stale do out[#out + 1] = stale[i] end
return out
"""

_AFTER_SUCCESS = """
redis.call('SET', KEYS[1], ARGV[4], 'EX', ARGV[3])
local function bump(key, name, v)
  local cur = redis.call('HGET', key, name)
  if (not cur) or cur < v then redis.call('HSET', key, name, v) end
end
bump(KEYS[2], '_v', ARGV[2])
if ARGV[5] == '1' then
  for i = 9, #ARGV do bump(KEYS[2], 'f:' .. ARGV[i], ARGV[2]) end
end
if ARGV[6] == '1' then
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all, 2 do
    if all[i] == '_v' or string.sub(all[i], 1, 2) == 'f:' then bump(KEYS[9], all[i], all[i + 1]) end
  end
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], '_renamed_to', ARGV[7], '_renamed_at', ARGV[2])
  redis.call('EXPIRE', KEYS[9], ARGV[8])
end
redis.call('EXPIRE', KEYS[2], ARGV[8])
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
redis.call('DEL', KEYS[4])
redis.call('DEL', KEYS[5])
if redis.call('GET', KEYS[6]) == ARGV[1] then redis.call('DEL', KEYS[6]) end
redis.call('HINCRBY', KEYS[7], 'applied', 1)
redis.call('SET', KEYS[8], ARGV[4])
local event_id = string.match(ARGV[1], '^(.*)#[^#]*$')
redis.call('ZREM', KEYS[10], event_id)
redis.call('HDEL', KEYS[11], event_id)
return 1
"""

# ARGV[2]: 1 = a target-wide failure (counts toward the breaker), 0 = the partner answered
# (resets it), 2 = neither (429). ARGV[6]/[7]: pause the target for this long, and why.
# ARGV[8]: the customer. The breaker counts failing customers, not failures: a customer that
# failed before since the last success adds nothing, and while the breaker is closed its
# failure is its own (state 'own': its attempts pay), once another customer succeeded after
# this event was first seen (ARGV[9]); before that, 'suspect'. A failed probe re-opens as
# any does.
_AFTER_FAILURE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[2])
local probe_mine = redis.call('GET', KEYS[5]) == ARGV[1]
if probe_mine then redis.call('DEL', KEYS[5]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = 'closed'
local pause_ms = tonumber(ARGV[6])
local reason = ARGV[7]
if ARGV[2] == '1' then
  local fresh = redis.call('HSETNX', KEYS[3], 'c:' .. ARGV[8], '1') == 1
  local failures = tonumber(redis.call('HGET', KEYS[3], 'failures') or '0')
  if fresh then failures = redis.call('HINCRBY', KEYS[3], 'failures', 1) end
  local threshold = tonumber(ARGV[3])
  if failures < threshold and not fresh then
    -- Its own failure only if the partner answered someone else since this event began.
    local last = tonumber(redis.call('GET', KEYS[6]) or '0')
    if last > tonumber(ARGV[9]) then state = 'own' else state = 'suspect' end
  elseif failures >= threshold then
    state = 'open'
    if (fresh and failures == threshold) or probe_mine then
      redis.call('HDEL', KEYS[3], 'half_at')
      local opens = redis.call('HINCRBY', KEYS[3], 'opens', 1)
      local cool = math.min(tonumber(ARGV[5]), tonumber(ARGV[4]) * 2 ^ (opens - 1))
      if cool > pause_ms then pause_ms = cool; reason = 'breaker' end
      redis.call('HSET', KEYS[3], 'state', 'open', 'opened_at', string.format('%.3f', now),
        'opened_until', string.format('%.3f', now + pause_ms / 1000))
      state = 'opened'
    end
  end
elseif ARGV[2] == '0' then
  redis.call('DEL', KEYS[3])
end
if pause_ms > 0 and pause_ms > redis.call('PTTL', KEYS[4]) then
  local until_s = string.format('%.3f', now + pause_ms / 1000)
  redis.call('SET', KEYS[4], '{"until":' .. until_s .. ',"reason":"' .. reason .. '"}',
    'PX', math.ceil(pause_ms))
end
local left = redis.call('PTTL', KEYS[4])
if left < 0 then left = 0 end
return {state, string.format('%.3f', now + left / 1000)}
"""


@dataclass(frozen=True)
class Gate:
    """What preflight decided."""

    verdict: str  # ok, duplicate, superseded, paused, probing, locked, rate, poison
    wait_s: float = 0.0  # for paused/probing/locked/rate: how long; for ok: sleep first
    probe: bool = False
    stale_fields: frozenset[str] = field(default_factory=frozenset)
    detail: str = ""


@dataclass(frozen=True)
class Limits:
    """The knobs preflight needs, per target."""

    lock_ms: int
    rate_per_s: float
    max_sleep_ms: int
    breaker_failures: int
    probe_ms: int
    poison_deliveries: int
    deliveries_ttl_s: int


class StateScripts:
    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._preflight = redis.register_script(_PREFLIGHT)
        self._after_success = redis.register_script(_AFTER_SUCCESS)
        self._after_failure = redis.register_script(_AFTER_FAILURE)

    def preflight(
        self,
        *,
        target: str,
        customer_id: str,
        event_id: str,
        holder: str,
        version: str,
        check_version: bool,
        field_level: bool,
        fields: Sequence[str],
        limits: Limits,
    ) -> Gate:
        k = self.keys
        raw = self._preflight(
            keys=[
                k.applied(event_id),
                k.version(target, customer_id),
                k.inflight(target, customer_id),
                k.pause(target),
                k.breaker(target),
                k.probe(target),
                k.rate(target),
                k.deliveries(event_id),
                k.counters(target),
                k.journal,
                k.journal_body,
            ],
            args=[
                holder,
                version,
                int(check_version),
                int(field_level),
                limits.lock_ms,
                limits.rate_per_s,
                limits.max_sleep_ms,
                limits.breaker_failures,
                limits.probe_ms,
                limits.poison_deliveries,
                limits.deliveries_ttl_s,
                customer_id,
                *fields,
            ],
        )
        verdict = str(raw[0])
        if verdict == "ok":
            return Gate("ok", float(raw[1]) / 1000, bool(int(raw[2])), frozenset(raw[3:]))
        if verdict in ("paused", "probing", "locked", "rate"):
            detail = str(raw[2]) if len(raw) > 2 else ""
            return Gate(verdict, max(0.0, float(raw[1]) / 1000), detail=detail)
        return Gate(verdict, detail=str(raw[1]) if len(raw) > 1 else "")

    def after_success(
        self,
        pipe: Any,
        *,
        target: str,
        customer_id: str,
        new_customer_id: str,
        event_id: str,
        holder: str,
        version: str,
        field_level: bool,
        sent_fields: Sequence[str],
        now: float,
        ledger_ttl_s: int,
        version_ttl_s: int,
    ) -> None:
        k = self.keys
        renamed = new_customer_id != customer_id
        self._after_success(
            keys=[
                k.applied(event_id),
                k.version(target, customer_id),
                k.inflight(target, customer_id),
                k.deliveries(event_id),
                k.breaker(target),
                k.probe(target),
                k.counters(target),
                k.last_success(target),
                k.version(target, new_customer_id),
                k.journal,
                k.journal_body,
            ],
            args=[
                holder,
                version,
                ledger_ttl_s,
                f"{now:.3f}",
                int(field_level),
                int(renamed),
                new_customer_id,
                version_ttl_s,
                *sent_fields,
            ],
            client=pipe,
        )

    def after_failure(
        self,
        pipe: Any,
        *,
        target: str,
        customer_id: str,
        event_id: str,
        holder: str,
        breaker: int,
        limits_failures: int,
        cooldown_ms: int,
        cooldown_max_ms: int,
        pause_ms: int = 0,
        pause_reason: str = "",
        first_seen_at: float = 0.0,
    ) -> Any:
        k = self.keys
        return self._after_failure(
            keys=[
                k.inflight(target, customer_id),
                k.deliveries(event_id),
                k.breaker(target),
                k.pause(target),
                k.probe(target),
                k.last_success(target),
            ],
            args=[
                holder,
                breaker,
                limits_failures,
                cooldown_ms,
                cooldown_max_ms,
                pause_ms,
                pause_reason,
                customer_id,
                f"{first_seen_at:.3f}",
            ],
            client=pipe,
        )
