#!lua
-- promote: move due jobs from the delayed set into the stream.
-- KEYS: stream, delayed
-- ARGV: limit (the most jobs moved in one call)
-- Reply: {moved, ms until the next job is due, or -1 when the set is empty}
-- The delayed-set document and the stream fields it becomes:
-- docs/reference/wire-format.md; in Python, trioqueue/_envelope.py.
-- @include now_ms
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, payload in ipairs(due) do
  local ok, job = pcall(cjson.decode, payload)
  if ok and type(job) == 'table' then
    local fields = {'id', tostring(job.id), 'type', tostring(job.type),
                    'body', tostring(job.body), 'attempt', tostring(job.attempt),
                    'enqueued', tostring(job.enqueued)}
    if job.key then
      fields[#fields + 1] = 'key'
      fields[#fields + 1] = tostring(job.key)
    end
    if job.unique then
      fields[#fields + 1] = 'unique'
      fields[#fields + 1] = '1'
    end
    if job.error then
      fields[#fields + 1] = 'error'
      fields[#fields + 1] = tostring(job.error)
    end
    for _, name in ipairs({'traceparent', 'tracestate'}) do
      if job[name] then
        fields[#fields + 1] = name
        fields[#fields + 1] = tostring(job[name])
      end
    end
    redis.call('XADD', KEYS[1], '*', unpack(fields))
  else
    redis.call('XADD', KEYS[1], '*', 'type', '', 'body', payload, 'attempt', '1')
  end
  redis.call('ZREM', KEYS[2], payload)
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local wait = -1
if nxt[2] then wait = math.max(0, tonumber(nxt[2]) - now) end
return {#due, wait}
