#!lua
-- send: enqueue jobs on one partition, now or later, checking the queue's bounds.
-- KEYS: stream, meta, delayed, events, then (only when unique) one unique key per job,
--       in job order (P:{Q:N}:unique:J)
-- ARGV: max_length (0 = none), max_message_bytes (0 = none), unique ('1' = the job ids
--       were chosen by the caller: enqueue each at most once), due (0 = now; > 0 =
--       epoch ms; < 0 = -delay ms from the server's clock), n, then n x (job id, type,
--       body, key ('' = none)), then the events max length (0 = none), then the W3C
--       traceparent and tracestate every job carries ('' = none; absent = none)
-- Reply: {entry ids ('' for delayed jobs), duplicate flags (1 = already enqueued)}
-- Errors: QUEUEFULL <max_length>, TOOLARGE <size> <limit>; nothing is added then.
-- Bounds and the events length stored in the meta hash (written from the config by
-- workers and `check`) win over the caller's. One 'sent' event per job enqueued. Stream fields and the delayed-set document:
-- docs/reference/wire-format.md; in Python, trioqueue/_envelope.py.
-- @include now_ms
-- @include emit
local meta = redis.call('HMGET', KEYS[2], 'max_length', 'max_message_bytes', 'events')
local maxlen = tonumber(meta[1] or ARGV[1])
local maxbytes = tonumber(meta[2] or ARGV[2])
local unique, due, n = ARGV[3] == '1', tonumber(ARGV[4]), tonumber(ARGV[5])
local events_max = tonumber(meta[3] or ARGV[6 + n * 4] or '0')
local traceparent, tracestate = ARGV[7 + n * 4] or '', ARGV[8 + n * 4] or ''
if maxlen > 0 and redis.call('XLEN', KEYS[1]) + n > maxlen then
  return redis.error_reply('QUEUEFULL ' .. maxlen)
end
if maxbytes > 0 then
  for i = 0, n - 1 do
    local size = #ARGV[8 + i * 4]
    if size > maxbytes then
      return redis.error_reply('TOOLARGE ' .. size .. ' ' .. maxbytes)
    end
  end
end
local now = 0
if due ~= 0 then now = now_ms() end
if due < 0 then due = now - due end
local ids, dups = {}, {}
-- No per-call field (caller-chosen ids, trace context) to add to each entry.
local plain = not unique and traceparent == ''
for i = 0, n - 1 do
  local b = 6 + i * 4
  local job, typ, body, key = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local ukey = KEYS[5 + i]
  if unique and redis.call('EXISTS', ukey) == 1 then
    ids[i + 1] = redis.call('GET', ukey)
    dups[i + 1] = 1
  else
    if due > 0 then
      local doc = {id = job, type = typ, body = body, attempt = 1, enqueued = now}
      if key ~= '' then doc.key = key end
      if unique then doc.unique = '1' end
      if traceparent ~= '' then doc.traceparent = traceparent end
      if tracestate ~= '' then doc.tracestate = tracestate end
      redis.call('ZADD', KEYS[3], due, cjson.encode(doc))
      ids[i + 1] = ''
    elseif plain and key == '' then
      -- The common job: no table to build and unpack.
      ids[i + 1] = redis.call('XADD', KEYS[1], '*', 'id', job, 'type', typ, 'body', body)
    else
      local fields = {'id', job, 'type', typ, 'body', body}
      if key ~= '' then fields[#fields + 1] = 'key'; fields[#fields + 1] = key end
      -- Marks an id the caller chose: its unique key is released when the job settles.
      if unique then fields[#fields + 1] = 'unique'; fields[#fields + 1] = '1' end
      if traceparent ~= '' then
        fields[#fields + 1] = 'traceparent'; fields[#fields + 1] = traceparent
        if tracestate ~= '' then fields[#fields + 1] = 'tracestate'; fields[#fields + 1] = tracestate end
      end
      ids[i + 1] = redis.call('XADD', KEYS[1], '*', unpack(fields))
    end
    if unique then redis.call('SET', ukey, ids[i + 1]) end
    dups[i + 1] = 0
    if events_max > 0 then
      local event = {'kind', 'sent', 'job', job, 'attempt', 1, 'type', typ}
      if due > 0 then event[#event + 1] = 'due'; event[#event + 1] = due end
      emit(KEYS[4], events_max, event)
    end
  end
end
return {ids, dups}
