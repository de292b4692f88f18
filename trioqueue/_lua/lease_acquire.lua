#!lua flags=allow-oom
-- lease_acquire: take an ordered partition's lease if nobody holds it.
-- KEYS: lease, epoch
-- ARGV: member, ttl_ms
-- Reply: the new token "<member>:<epoch>", or false when the lease is taken
-- The epoch only grows, so every change of hands yields a larger fencing token.
-- allow-oom: a full broker must still get owners for its partitions to be drained.
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = ARGV[1] .. ':' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', tonumber(ARGV[2]))
return token
