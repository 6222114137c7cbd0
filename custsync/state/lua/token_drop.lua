-- token_drop: Delete the shared token only if it is still the one that was refused.
-- KEYS: token
-- ARGV: value
local cur = redis.call('GET', KEYS[1])
if cur and cjson.decode(cur)['token'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
