#!lua flags=allow-oom
-- ordered_fetch: read new entries of an ordered partition, only while the caller holds
-- its lease, so a paused owner that wakes up after losing it cannot take (and reorder)
-- work.
-- KEYS: stream, lease
-- ARGV: group, consumer, token, count
-- Reply: {entries, ''} or, when there is nothing new, {{}, id of the newest entry or
--        '0-0'} to block on
-- Errors: FENCED (the lease is not the caller's)
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return redis.error_reply('FENCED lease lost') end
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', tonumber(ARGV[4]),
                     'STREAMS', KEYS[1], '>')
if r and r[1] and #r[1][2] > 0 then return {r[1][2], ''} end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then return {{}, last[1][1]} end
return {{}, '0-0'}
