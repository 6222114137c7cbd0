-- lock_release: Release a lock only if this holder still has it.
-- KEYS: lock
-- ARGV: holder
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
