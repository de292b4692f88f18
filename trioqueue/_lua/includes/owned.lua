-- owned(stream, group, id, me): whether entry `id` is pending for consumer `me`.
-- XACK checks no owner, so every settling script asks this first: a worker paused past
-- its heartbeat TTL is fenced instead of settling a job another member now runs.
local function owned(stream, group, id, me)
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  return p[1] ~= nil and p[1][2] == me
end
