-- locate(stream, delayed, group, job, eid, limit): find job `job` in the stream (at the
-- known entry id `eid`, else by scanning up to `limit` entries) or in the delayed set.
-- Returns kind ('stream' or 'delayed'), the entry id or delayed payload, the entry's
-- fields or the due score, and {owner, idle ms, deliveries} when it is being run; nil
-- when neither holds it.
-- @include field
local function job_of(entry)
  return field(entry[2], 'id') or entry[1]
end
local function locate(stream, delayed, group, job, eid, limit)
  local found
  if eid ~= '' then
    local r = redis.call('XRANGE', stream, eid, eid)
    if r[1] and job_of(r[1]) == job then found = r[1] end
  end
  if not found then
    local start, seen = '-', 0
    while not found and seen < limit do
      local page = redis.call('XRANGE', stream, start, '+', 'COUNT', 500)
      if #page == 0 then break end
      for _, e in ipairs(page) do
        if job_of(e) == job then found = e; break end
      end
      seen = seen + #page
      start = '(' .. page[#page][1]
    end
  end
  if found then
    local ok, p = pcall(redis.call, 'XPENDING', stream, group, found[1], found[1], 1)
    local pending = nil
    if ok and p[1] then pending = {p[1][2], p[1][3], p[1][4]} end
    return 'stream', found[1], found[2], pending
  end
  local needle = '"id":"' .. job .. '"'
  local members = redis.call('ZRANGE', delayed, 0, limit - 1, 'WITHSCORES')
  for i = 1, #members, 2 do
    if string.find(members[i], needle, 1, true) then
      return 'delayed', members[i], members[i + 1], nil
    end
  end
  return nil
end
