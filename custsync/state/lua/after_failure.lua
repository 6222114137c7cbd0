-- after_failure: The call failed: release the customer, count toward the breaker, pause the target.
-- breaker: 1 = a target-wide failure, 0 = the partner answered (resets it), 2 = neither (429).
-- The breaker counts failing customers, not failures: a customer that failed before since
-- the last success adds nothing, and while the breaker is closed its failure is its own
-- ('own': its attempts pay) once another customer succeeded after this event was first
-- seen, else 'suspect'. A failed probe re-opens as any does.
-- KEYS: inflight deliveries breaker pause probe last_success
-- ARGV: holder breaker failures cooldown_ms cooldown_max_ms pause_ms pause_reason customer_id first_seen_at
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
  local value = cjson.encode({['until'] = tonumber(until_s), reason = reason})
  redis.call('SET', KEYS[4], value, 'PX', math.ceil(pause_ms))
end
local left = redis.call('PTTL', KEYS[4])
if left < 0 then left = 0 end
return {state, string.format('%.3f', now + left / 1000)}
