#!lua flags=allow-oom
-- forget_consumer: delete a consumer only if it has no pending entries (DELCONSUMER
-- alone would drop them).
-- KEYS: stream
-- ARGV: group, consumer
-- Reply: 1 when deleted, 0 when it still has pending entries
-- allow-oom: it only frees memory.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if p[1] ~= nil then return 0 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) + 1
