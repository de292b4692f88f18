#!lua flags=allow-oom
-- lease_renew: extend a lease the caller still holds.
-- KEYS: lease
-- ARGV: token, ttl_ms
-- Reply: 1 when renewed, 0 when the lease is lost
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
