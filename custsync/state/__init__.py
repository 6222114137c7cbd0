"""All shared state in Redis: the keys, the Lua scripts and the ideas built on them (the
version guard, the breaker, the retry set, the journal). Nothing heavy is imported here."""
