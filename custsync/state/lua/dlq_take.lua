-- dlq_take: Compare-and-delete a DLQ entry (an entry rewritten since it was read is left alone); with
-- a message, LPUSH it onto the queue and journal it in the same step (atomic replay).
-- KEYS: entry queue past journal journal_body *indexes
-- ARGV: raw event_id message past past_ttl_ms journal_body now entry_id
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if current ~= ARGV[1] then return -1 end
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[2])
  redis.call('HSET', KEYS[5], ARGV[2], ARGV[6])
  redis.call('LPUSH', KEYS[2], ARGV[3])
end
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[5]) end
redis.call('DEL', KEYS[1])
for i = 6, #KEYS do redis.call('ZREM', KEYS[i], ARGV[8]) end
return 1
