-- emit(events, maxlen, fields): append one job event (a flat {name, value, ...} list
-- starting with 'kind') to the partition's event stream, trimmed to about `maxlen`
-- entries; nothing when `maxlen` is 0 (events are off for the queue).
-- Event fields: docs/reference/wire-format.md, "Job events"; read by trioqueue/_events.py.
local function emit(events, maxlen, fields)
  if maxlen > 0 then
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', unpack(fields))
  end
end
