#!lua
-- cron_claim: claim a schedule's tick by compare-and-set; only the claimant fires it.
-- KEYS: the schedule's claim key (P:cron:S)
-- ARGV: tick (epoch ms)
-- Reply: 1 if this caller won the tick, 0 if it was claimed already
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local tick = tonumber(ARGV[1])
if tick <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
