#!lua
-- retry: move an entry this consumer owns to the delayed set, for its next attempt.
-- KEYS: stream, delayed
-- ARGV: group, consumer, entry id, delay_ms, payload (the delayed-set document with
--       attempt + 1: docs/reference/wire-format.md, built by trioqueue/_envelope.py)
-- Reply: 1 when moved to the delayed set, 0 when fenced (another consumer owns it).
-- @include owned
-- @include now_ms
local stream, group, me, id = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if not owned(stream, group, id, me) then return 0 end
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[4]), ARGV[5])
redis.call('XACK', stream, group, id)
redis.call('XDEL', stream, id)
return 1
