-- dlq_move: Replay a batch of DLQ entries as one apply_batch message, atomically. Each entry
-- still stored exactly as read leaves the DLQ with its index rows, keeps its history
-- under its past key, is noted in the journal, and its item joins the message; the message
-- is pushed only if one did. Answers one character per entry: 1 taken, 0 gone, x changed.
-- KEYS: queue journal journal_body *keys
-- ARGV: head tail now past_ttl_ms n_indexes *specs
-- keys: the batch's distinct index keys (n_indexes of them), then per entry its entry key
-- and past key. specs: per entry its raw JSON as read, journal id, item JSON, past JSON,
-- entry id, and its index keys as comma-separated positions among the first n_indexes.
local n_idx = tonumber(ARGV[5])
local answers, items, removed, jids, bodies = {}, {}, {}, {}, {}
local k = 4 + n_idx
for i = 6, #ARGV, 6 do
  local raw, jid, item, past, entry_id = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local current = redis.call('GET', KEYS[k])
  if not current then
    answers[#answers + 1] = '0'
  elseif current ~= raw then  -- Lua interns strings: this compares pointers
    answers[#answers + 1] = 'x'
  else
    redis.call('DEL', KEYS[k])
    for pos in string.gmatch(ARGV[i + 5], '%d+') do
      local key = KEYS[3 + tonumber(pos)]
      local ids = removed[key]
      if not ids then ids = {}; removed[key] = ids end
      ids[#ids + 1] = entry_id
    end
    if past ~= '' then redis.call('SET', KEYS[k + 1], past, 'PX', ARGV[4]) end
    jids[#jids + 1] = ARGV[3]
    jids[#jids + 1] = jid
    bodies[#bodies + 1] = jid
    bodies[#bodies + 1] = item
    items[#items + 1] = item
    answers[#answers + 1] = '1'
  end
  k = k + 2
end
for key, ids in pairs(removed) do redis.call('ZREM', key, unpack(ids)) end
if #items > 0 then
  redis.call('ZADD', KEYS[2], unpack(jids))
  redis.call('HSET', KEYS[3], unpack(bodies))
  local body = '[[[' .. table.concat(items, ',') .. ']],{},'
    .. '{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]'
  redis.call('LPUSH', KEYS[1], ARGV[1] .. cjson.encode(body) .. ARGV[2])
end
return table.concat(answers)
