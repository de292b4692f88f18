#!lua
-- dlq_retry: re-send dead-lettered jobs as fresh jobs (attempt 1) and remove them from
-- the dead-letter stream, in one step.
-- KEYS: stream, dead, meta, events
-- ARGV: count, then either dead-letter entry ids, or '' followed by a range (start, end)
--       to take the next `count` entries of
-- Reply: {re-sent, skipped (not a job envelope), id of the last entry looked at ('' if
--        none)}
-- Dead-letter entries and stream fields: docs/reference/wire-format.md; in Python,
-- trioqueue/_deadletters.py and trioqueue/_envelope.py. Each re-sent job gets a 'sent'
-- event when the meta hash's `events` length turns events on.
-- @include emit
local events_max = tonumber(redis.call('HGET', KEYS[3], 'events') or '0')
local entries = {}
if ARGV[2] == '' then
  entries = redis.call('XRANGE', KEYS[2], ARGV[3], ARGV[4], 'COUNT', tonumber(ARGV[1]))
else
  for i = 2, #ARGV do
    local r = redis.call('XRANGE', KEYS[2], ARGV[i], ARGV[i])
    if r[1] then entries[#entries + 1] = r[1] end
  end
end
local resent, skipped = 0, 0
for _, e in ipairs(entries) do
  local f, job = e[2], {}
  for i = 1, #f, 2 do job[f[i]] = f[i + 1] end
  if job['type'] and job['body'] then
    local fields = {'id', job['id'] or e[1], 'type', job['type'], 'body', job['body']}
    if job['key'] and job['key'] ~= '' then
      fields[#fields + 1] = 'key'
      fields[#fields + 1] = job['key']
    end
    -- The re-sent job's run joins the trace of its first send.
    for _, name in ipairs({'traceparent', 'tracestate'}) do
      if job[name] then
        fields[#fields + 1] = name
        fields[#fields + 1] = job[name]
      end
    end
    redis.call('XADD', KEYS[1], '*', unpack(fields))
    redis.call('XDEL', KEYS[2], e[1])
    emit(KEYS[4], events_max, {'kind', 'sent', 'job', fields[2], 'attempt', 1,
                               'type', job['type']})
    resent = resent + 1
  else
    -- Not a job envelope (e.g. a raw malformed entry): keep it for a human to read.
    skipped = skipped + 1
  end
end
local last = ''
if #entries > 0 then last = entries[#entries][1] end
return {resent, skipped, last}
