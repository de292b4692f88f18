#!lua flags=allow-oom
-- members_touch: record when this member's heartbeat expires; prune long-dead members.
-- KEYS: members sorted set
-- ARGV: member, ttl_ms, forget_after_ms
-- Reply: the server's time, epoch ms
-- Scores are the server time each member's heartbeat expires.
-- allow-oom: as heartbeat.lua.
-- @include now_ms
local now = now_ms()
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
return now
