#!lua flags=allow-oom
-- ack: acknowledge and delete the entries this consumer still owns, storing each job's
-- outcome and releasing its unique key; add the batch's totals to the minute's history
-- and write its job events.
-- KEYS: stream, history (P:{Q:N}:history:<minute>), events, then per job as ARGV refers
--       to them: its unique key (only for a job sent with a caller-chosen id), and its
--       result, wait and done keys (in that order, only when an outcome is stored)
-- ARGV: group, consumer, result_ttl_ms, n, then n x (entry id, index of the unique key
--       or 0, index of the result key or 0 (wait and done follow it), outcome
--       document), then c (the last c jobs were cancelled on request, the others
--       succeeded), events max length (0 = no events), history ttl_ms (0 = no
--       history), the totals of jobs settled apart (failed, retried, dead,
--       handler_ms), m, then m x (kind, job id, attempt, error type, error) of events
--       that come first (jobs started, attempts retried in place), and, only when
--       events are on, n x (job id, attempt) of the jobs above
-- Reply: {ids pending for another consumer (fenced), ids not pending at all (settled
--        already: by an earlier call of ours whose reply was lost, or by another member)}
-- History: one HINCRBY per non-zero total of the batch, never one per job. Events: the
-- m listed ones first, then one 'succeeded' or 'cancelled' per job settled here.
-- allow-oom: acknowledging frees memory, so a full server can still be drained.
-- Outcome documents, history and events: docs/reference/wire-format.md; in Python,
-- trioqueue/_outcome.py, trioqueue/_history.py and trioqueue/_events.py.
-- @include store_outcome
-- @include release_unique
-- @include emit
-- @include tally
local stream, history, events, group, me = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2]
local ttl = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local t = 5 + n * 4  -- the batch's totals and events follow the jobs
local c, maxlen, history_ttl = tonumber(ARGV[t]), tonumber(ARGV[t + 1]), tonumber(ARGV[t + 2])
local m = tonumber(ARGV[t + 7])
for i = 0, m - 1 do
  local b = t + 8 + i * 5
  local fields = {'kind', ARGV[b], 'job', ARGV[b + 1], 'attempt', ARGV[b + 2]}
  if ARGV[b] == 'started' then fields[#fields + 1] = 'worker'; fields[#fields + 1] = me end
  if ARGV[b + 3] ~= '' then
    fields[#fields + 1] = 'error_type'; fields[#fields + 1] = ARGV[b + 3]
    fields[#fields + 1] = 'error'; fields[#fields + 1] = ARGV[b + 4]
  end
  emit(events, maxlen, fields)
end
local ev = t + 8 + m * 5  -- (job id, attempt) per job, when events are on
local fenced, gone, ids = {}, {}, {}
local succeeded, cancelled = 0, 0
if n > 0 then
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
  for i = 0, n - 1 do
    local b = 5 + i * 4
    local id = ARGV[b]
    if mine[id] then
      ids[#ids + 1] = id
      local u = tonumber(ARGV[b + 1])
      if u > 0 then release_unique(KEYS[u], ttl) end
      local k = tonumber(ARGV[b + 2])
      if k > 0 then store_outcome(KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[b + 3], ttl) end
      local kind = 'succeeded'
      if i >= n - c then
        kind, cancelled = 'cancelled', cancelled + 1
      else
        succeeded = succeeded + 1
      end
      if maxlen > 0 then
        emit(events, maxlen, {'kind', kind, 'job', ARGV[ev + i * 2],
                              'attempt', ARGV[ev + i * 2 + 1]})
      end
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
end
tally(history, history_ttl, {'succeeded', succeeded, 'cancelled', cancelled,
                             'failed', ARGV[t + 3], 'retried', ARGV[t + 4],
                             'dead', ARGV[t + 5], 'handler_ms', ARGV[t + 6]})
return {fenced, gone}
