-- ingest_rate: GCRA for one ingest source, shared by every replica: 0 if allowed now, else
-- the milliseconds to wait. A burst of up to `burst` requests passes at once.
-- KEYS: tat
-- ARGV: now_ms interval_ms burst
local now, interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allowed_at = tat - interval * (burst - 1)
if now < allowed_at then return math.ceil(allowed_at - now) end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
return 0
