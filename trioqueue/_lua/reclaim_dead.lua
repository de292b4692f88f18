#!lua flags=allow-oom
-- reclaim_dead: claim entries that went past max_deliveries (listed by reclaim.lua) and
-- move them to the dead-letter stream, storing each job's outcome and releasing its
-- unique key, in one step per entry.
-- KEYS: stream, dead, events, then per entry its job's result, wait, done and unique
--       keys (in that order)
-- ARGV: group, consumer, min_idle_ms, max_deliveries, worker id, result_ttl_ms, own ('1'
--       = the caller's own entries too), events max length (0 = no events), then
--       triples of (entry id, index of its result key, job id)
-- Reply: {dead_count, lost_count}
-- Each entry is checked again: one settled, renewed or taken by someone else since
-- reclaim.lua listed it is left alone.
-- allow-oom: draining a full broker must not stall on a job that keeps killing its
-- workers; the entry leaves its stream in the same step as it enters the dead letters.
-- Dead-letter entries and outcome documents: docs/reference/wire-format.md; in Python,
-- trioqueue/_deadletters.py and trioqueue/_outcome.py.
-- @include now_ms
-- @include store_outcome
-- @include release_unique
-- @include emit
-- @include field
local stream, dead, group, me = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local min_idle, max_deliveries, worker = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local ttl, own, maxlen = tonumber(ARGV[6]), ARGV[7] == '1', tonumber(ARGV[8])
local dead_n, lost_n = 0, 0
for i = 9, #ARGV - 2, 3 do
  local id, k = ARGV[i], tonumber(ARGV[i + 1])
  local p = redis.call('XPENDING', stream, group, id, id, 1)[1]
  local deliveries = p and tonumber(p[4]) + 1
  if p and (p[2] ~= me or own) and tonumber(p[3]) >= min_idle
      and max_deliveries > 0 and deliveries > max_deliveries then
    local from = p[2]
    local entry = redis.call('XCLAIM', stream, group, me, min_idle, id)[1]
    if not entry or not entry[2] then
      lost_n = lost_n + 1
    else
      local fields = entry[2]
      fields[#fields + 1] = 'error_type'
      fields[#fields + 1] = 'MaxDeliveriesExceeded'
      fields[#fields + 1] = 'error'
      fields[#fields + 1] = 'delivered ' .. deliveries .. ' times (max_deliveries=' ..
                            max_deliveries .. '); last owner ' .. from
      fields[#fields + 1] = 'worker'
      fields[#fields + 1] = worker
      fields[#fields + 1] = 'source_id'
      fields[#fields + 1] = id
      fields[#fields + 1] = 'failed_at'
      fields[#fields + 1] = tostring(now_ms())
      redis.call('XADD', dead, '*', unpack(fields))
      redis.call('XACK', stream, group, id)
      redis.call('XDEL', stream, id)
      store_outcome(KEYS[k], KEYS[k + 1], KEYS[k + 2], cjson.encode({
        state = 'failed', error_type = 'MaxDeliveriesExceeded',
        error = 'delivered ' .. deliveries .. ' times'}), ttl)
      release_unique(KEYS[k + 3], ttl)
      emit(KEYS[3], maxlen, {'kind', 'dead', 'job', ARGV[i + 2], 'attempt',
                             field(fields, 'attempt') or '1',
                             'error_type', 'MaxDeliveriesExceeded',
                             'error', 'delivered ' .. deliveries .. ' times'})
      dead_n = dead_n + 1
    end
  end
end
return {dead_n, lost_n}
