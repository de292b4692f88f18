#!lua flags=allow-oom
-- touch: reset the idle time of entries this consumer still owns (JUSTID: not a
-- delivery) and report which of their jobs were asked to cancel.
-- KEYS: stream, then one cancel-marker key per entry (P:{Q:N}:cancel:J), in ARGV order
-- ARGV: group, consumer, entry ids...
-- Reply: {ids it no longer owns, ids whose job was asked to cancel}
-- allow-oom: renewing adds nothing, and a full server must not make running jobs look
-- abandoned.
-- @include owned
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local lost, cancel = {}, {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if owned(stream, group, id, me) then
    redis.call('XCLAIM', stream, group, me, 0, id, 'JUSTID')
    if redis.call('EXISTS', KEYS[i - 1]) == 1 then cancel[#cancel + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
return {lost, cancel}
