#!lua flags=allow-oom
-- ack: acknowledge and delete the entries this consumer still owns, storing each job's
-- outcome and releasing its unique key.
-- KEYS: stream, then per job as ARGV refers to them: its unique key (only for a job
--       sent with a caller-chosen id), and its result, wait and done keys (in that order,
--       only when an outcome is stored)
-- ARGV: group, consumer, result_ttl_ms, n, then n x (entry id, index of the unique key
--       or 0, index of the result key or 0 (wait and done follow it), outcome document)
-- Reply: {ids pending for another consumer (fenced), ids not pending at all (settled
--        already: by an earlier call of ours whose reply was lost, or by another member)}
-- allow-oom: acknowledging frees memory, so a full server can still be drained.
-- Outcome documents: docs/reference/wire-format.md, built by trioqueue/_outcome.py.
-- @include store_outcome
-- @include release_unique
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local ttl = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
-- One XPENDING over the batch's id range finds what this consumer still owns (the
-- range holds at most our own pending entries in between: bounded by 2 x concurrency).
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local lo, hi = ARGV[5], ARGV[5]
local lo_ms, lo_seq = parse(lo)
local hi_ms, hi_seq = lo_ms, lo_seq
for i = 1, n - 1 do
  local id = ARGV[5 + i * 4]
  local ms, seq = parse(id)
  if ms < lo_ms or (ms == lo_ms and seq < lo_seq) then lo, lo_ms, lo_seq = id, ms, seq end
  if ms > hi_ms or (ms == hi_ms and seq > hi_seq) then hi, hi_ms, hi_seq = id, ms, seq end
end
local mine = {}
for _, p in ipairs(redis.call('XPENDING', stream, group, lo, hi, 1000000, me)) do
  mine[p[1]] = true
end
local fenced, gone, ids = {}, {}, {}
for i = 0, n - 1 do
  local b = 5 + i * 4
  local id = ARGV[b]
  if mine[id] then
    ids[#ids + 1] = id
    local u = tonumber(ARGV[b + 1])
    if u > 0 then release_unique(KEYS[u], ttl) end
    local k = tonumber(ARGV[b + 2])
    if k > 0 then store_outcome(KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[b + 3], ttl) end
  elseif redis.call('XPENDING', stream, group, id, id, 1)[1] ~= nil then
    fenced[#fenced + 1] = id  -- pending for another consumer
  else
    gone[#gone + 1] = id  -- settled already: by us (a retried call) or by another
  end
end
if #ids > 0 then
  redis.call('XACK', stream, group, unpack(ids))
  redis.call('XDEL', stream, unpack(ids))
end
return {fenced, gone}
