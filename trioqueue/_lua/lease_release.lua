#!lua flags=allow-oom
-- lease_release: give up a lease the caller still holds.
-- KEYS: lease
-- ARGV: token
-- Reply: 1 when released, 0 when it was not ours any more
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
