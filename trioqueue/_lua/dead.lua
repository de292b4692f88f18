#!lua
-- dead: move an entry this consumer owns to the dead-letter stream, storing the job's
-- outcome and releasing its unique key.
-- KEYS: stream, dead, result, wait, done, unique (the job's keys: P:{Q:N}:result:J ...)
-- ARGV: group, consumer, entry id, result_ttl_ms, outcome document ('' = none), then
--       field/value pairs of the dead-letter entry
-- Reply: the dead-letter entry id, or false when fenced (another consumer owns it).
-- Dead-letter entries and outcome documents: docs/reference/wire-format.md; in Python,
-- trioqueue/_deadletters.py and trioqueue/_outcome.py (the caller builds both).
-- @include owned
-- @include now_ms
-- @include store_outcome
-- @include release_unique
local stream, dead, group, me, id = KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3]
if not owned(stream, group, id, me) then return false end
local ttl = tonumber(ARGV[4])
store_outcome(KEYS[3], KEYS[4], KEYS[5], ARGV[5], ttl)
release_unique(KEYS[6], ttl)
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
fields[#fields + 1] = 'failed_at'
fields[#fields + 1] = tostring(now_ms())
local dead_id = redis.call('XADD', dead, '*', unpack(fields))
redis.call('XACK', stream, group, id)
redis.call('XDEL', stream, id)
return dead_id
