#!lua
-- retry: move an entry this consumer owns to the delayed set, for its next attempt.
-- KEYS: stream, delayed, events
-- ARGV: group, consumer, entry id, delay_ms, payload (the delayed-set document with
--       attempt + 1: docs/reference/wire-format.md, built by trioqueue/_envelope.py),
--       events max length (0 = no events), job id, attempt, error type, error
-- Reply: 1 when moved to the delayed set, 0 when fenced (another consumer owns it).
-- Events: 'failed' (the attempt), then 'retrying' (the next attempt and when it is due).
-- @include owned
-- @include now_ms
-- @include emit
local stream, events, group, me, id = KEYS[1], KEYS[3], ARGV[1], ARGV[2], ARGV[3]
if not owned(stream, group, id, me) then return 0 end
local due = now_ms() + tonumber(ARGV[4])
redis.call('ZADD', KEYS[2], due, ARGV[5])
redis.call('XACK', stream, group, id)
redis.call('XDEL', stream, id)
local maxlen, job, attempt = tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[8])
emit(events, maxlen, {'kind', 'failed', 'job', job, 'attempt', attempt,
                      'error_type', ARGV[9], 'error', ARGV[10]})
emit(events, maxlen, {'kind', 'retrying', 'job', job, 'attempt', attempt + 1,
                      'due', due})
return 1
