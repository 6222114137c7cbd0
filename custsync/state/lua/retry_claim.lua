-- retry_claim: Claim due events of one target with a lease: each moves once, a claim whose poller died
-- is handed out again when its lease ends.
-- KEYS: retry claimed
-- ARGV: now lease_end limit
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZADD', KEYS[2], ARGV[2], m)
  out[#out + 1] = m
end
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, m in ipairs(lapsed) do
  redis.call('ZADD', KEYS[2], ARGV[2], m)
  out[#out + 1] = m
end
return out
