#!lua flags=allow-oom
-- reclaim: claim entries idle at least min_idle_ms from other consumers (without
-- JUSTID, so the delivery counter counts).
-- KEYS: stream
-- ARGV: group, consumer, min_idle_ms, count, owner ('' = any other consumer),
--       max_deliveries (0 = no limit), suspect_at (0 = off), idle ('1' = the caller runs
--       nothing and may take one suspect), own ('1' = the caller's own entries too: a new
--       owner of an ordered partition takes over everything pending)
-- Reply: {claimed: {entry id, fields, deliveries, suspect (1 or 0)}..., over: {entry id,
--        job id}..., lost_count, suspects_left}
-- An entry that would go past max_deliveries is not claimed but listed in `over`: the
-- caller dead-letters it next with reclaim_dead.lua, which needs that job's keys (only
-- known once its entry has been read here). An entry that would reach suspect_at
-- deliveries has been held by members that vanished time after time: it may be the job
-- that kills them, and whatever runs beside it is charged a delivery too when it
-- strikes again. So suspects are claimed only by an idle caller, one at a time and with
-- nothing else, to be run alone; a busy caller leaves them (unclaimed, their counters
-- untouched) and counts them. Entries deleted from the stream while pending are dropped
-- from the pending list and counted as lost.
-- allow-oom: taking over stranded entries is how a full broker gets drained after a
-- worker died; it only moves entries between pending lists.
-- @include field
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local min_idle, count, owner = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local max_deliveries = tonumber(ARGV[6])
local pending
if owner ~= '' then
  pending = redis.call('XPENDING', stream, group, 'IDLE', min_idle, '-', '+', count, owner)
else
  pending = redis.call('XPENDING', stream, group, 'IDLE', min_idle, '-', '+', count)
end
local suspect_at, idle = tonumber(ARGV[7]), ARGV[8] == '1'
local function is_over(deliveries)
  return max_deliveries > 0 and deliveries > max_deliveries
end
local function is_suspect(deliveries)
  return suspect_at > 0 and deliveries >= suspect_at and not is_over(deliveries)
end
local isolate = false
if idle then
  for _, p in ipairs(pending) do
    if p[2] ~= me and is_suspect(tonumber(p[4]) + 1) then isolate = true; break end
  end
end
local out, over, lost_n, left = {}, {}, 0, 0
local took_suspect = false
for _, p in ipairs(pending) do
  local id, from = p[1], p[2]
  local deliveries = tonumber(p[4]) + 1
  local suspect = is_suspect(deliveries)
  local take = from ~= me or ARGV[9] == '1'
  if take and suspect and (not isolate or took_suspect) then
    left = left + 1
    take = false
  elseif take and isolate and not suspect and not is_over(deliveries) then
    take = false  -- claimed after the suspect ran alone
  end
  if take and is_over(deliveries) then
    local entry = redis.call('XRANGE', stream, id, id)[1]
    if entry then
      over[#over + 1] = {id, field(entry[2], 'id') or id}
    else
      -- Deleted while pending: claiming drops it from the pending list.
      redis.call('XCLAIM', stream, group, me, min_idle, id)
      lost_n = lost_n + 1
    end
  elseif take then
    local claimed = redis.call('XCLAIM', stream, group, me, min_idle, id)
    local entry = claimed[1]
    if not entry or not entry[2] then
      lost_n = lost_n + 1
    else
      if suspect then took_suspect = true end
      out[#out + 1] = {id, entry[2], deliveries, suspect and 1 or 0}
    end
  end
end
return {out, over, lost_n, left}
