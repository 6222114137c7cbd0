-- after_success: The partner applied it: record the ledger and the versions (carried to the new code on a
-- rename), release the customer, close the breaker, forget the journal entry.
-- KEYS: applied version inflight deliveries breaker probe counters last_success new_version journal journal_body minute
-- ARGV: holder version ledger_ttl_s now field_level renamed new_customer_id version_ttl_s *sent_fields
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
redis.call('HINCRBY', KEYS[12], 'applied', 1)
redis.call('EXPIRE', KEYS[12], 7200)  -- the console's chart shows the last hour
redis.call('SET', KEYS[8], ARGV[4])
local event_id = string.match(ARGV[1], '^(.*)#[^#]*$')
redis.call('ZREM', KEYS[10], event_id)
redis.call('HDEL', KEYS[11], event_id)
return 1
