-- preflight: May this event go to the partner now? Ledger, version guard, pause and breaker, in-flight
-- lock, shared rate limit, poison counter; takes the lock. One round trip.
-- KEYS: applied version inflight pause breaker probe rate deliveries counters journal journal_body
-- ARGV: holder version check_version field_level lock_ms rate_per_s max_sleep_ms breaker_failures probe_ms poison_deliveries deliveries_ttl_s customer_id *fields
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
