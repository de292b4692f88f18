#!lua
-- progress: store the latest progress of a job this consumer still runs, and emit a
-- 'progress' event; fenced like an acknowledgement.
-- KEYS: stream, progress (P:{Q:N}:progress:J), events
-- ARGV: group, consumer, entry id, value (JSON), ttl_ms, events max length (0 = no
--       events), job id, attempt
-- Reply: 1 when stored, 0 when fenced (the entry is not pending for this consumer).
-- The value and the event: docs/reference/wire-format.md.
-- @include owned
-- @include emit
local stream, group, me, id = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if not owned(stream, group, id, me) then return 0 end
redis.call('SET', KEYS[2], ARGV[4], 'PX', tonumber(ARGV[5]))
emit(KEYS[3], tonumber(ARGV[6]), {'kind', 'progress', 'job', ARGV[7], 'attempt', ARGV[8],
                                  'progress', ARGV[4]})
return 1
