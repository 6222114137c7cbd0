-- breaker_alert_claim: Claim the outage's one alert: a field of the breaker hash, which lives from the first
-- failure to the partner's next answer. A breaker already closed again creates nothing.
-- KEYS: breaker
-- ARGV: 
if redis.call('EXISTS', KEYS[1]) == 0 then return 1 end
return redis.call('HSETNX', KEYS[1], 'alerted', 1)
