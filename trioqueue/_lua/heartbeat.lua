#!lua flags=allow-oom
-- heartbeat: renew this member's heartbeat key.
-- KEYS: member key
-- ARGV: info (JSON: id, app, queues), ttl_ms
-- Reply: 1 if the previous heartbeat was still alive, 0 if it had expired (peers may
--        have taken our jobs)
-- allow-oom: heartbeats are tiny; refused on a full broker they would make every
-- worker look dead, and nothing could drain it.
local alive = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return alive
