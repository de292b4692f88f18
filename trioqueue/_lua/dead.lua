#!lua
-- dead: move an entry this consumer owns to the dead-letter stream, storing the job's
-- outcome and releasing its unique key.
-- KEYS: stream, dead, result, wait, done, unique (the job's keys: P:{Q:N}:result:J ...),
--       events
-- ARGV: group, consumer, entry id, result_ttl_ms, outcome document ('' = none), then
--       field/value pairs of the dead-letter entry, then the events max length (0 = no
--       events; last, so that the fields stay where readers of this layout expect them)
-- Reply: the dead-letter entry id, or false when fenced (another consumer owns it).
-- Events: 'failed' (the attempt, or the entry that could not be run), then 'dead', with
-- the job id, attempt and error of the dead-letter fields.
-- Dead-letter entries and outcome documents: docs/reference/wire-format.md; in Python,
-- trioqueue/_deadletters.py and trioqueue/_outcome.py (the caller builds both).
-- @include owned
-- @include now_ms
-- @include store_outcome
-- @include release_unique
-- @include emit
-- @include field
local stream, dead, group, me, id = KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3]
if not owned(stream, group, id, me) then return false end
local ttl = tonumber(ARGV[4])
store_outcome(KEYS[3], KEYS[4], KEYS[5], ARGV[5], ttl)
release_unique(KEYS[6], ttl)
local fields = {}
for i = 6, #ARGV - 1 do fields[#fields + 1] = ARGV[i] end
fields[#fields + 1] = 'failed_at'
fields[#fields + 1] = tostring(now_ms())
local dead_id = redis.call('XADD', dead, '*', unpack(fields))
redis.call('XACK', stream, group, id)
redis.call('XDEL', stream, id)
local maxlen = tonumber(ARGV[#ARGV])
local detail = {'job', field(fields, 'id') or id, 'attempt', field(fields, 'attempt') or '1',
                'error_type', field(fields, 'error_type') or '',
                'error', field(fields, 'error') or ''}
emit(KEYS[7], maxlen, {'kind', 'failed', unpack(detail)})
emit(KEYS[7], maxlen, {'kind', 'dead', unpack(detail)})
return dead_id
