"""Every Lua script trioqueue runs, defined once.

Rules (see docs/explanation/delivery.md):

- each script starts with a ``#!lua`` line so the server applies the safe defaults
  (all keys declared, single slot, refused on read-only replicas);
- scripts that only free memory (acknowledge, renew, purge) declare ``allow-oom`` so
  a full server can still be drained; scripts that add data keep the default and fail
  definitely under OOM;
- anything that settles a delivery first checks that the entry is still pending
  *and owned by this consumer*, because ``XACK`` itself checks no owner: a worker that
  was paused past its heartbeat TTL is fenced instead of acknowledging a job another
  member now runs;
- due times come from the server's ``TIME``, never from a worker's clock.
"""

from __future__ import annotations

# Shared Lua prelude: owner check and server clock.
_PRELUDE = """
local function owned(stream, group, id, me)
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  return p[1] ~= nil and p[1][2] == me
end
-- Store a job's outcome document and wake a client waiting for it (see Client.result).
local function store_outcome(key, doc, ttl)
  if ttl <= 0 or doc == '' then return end
  redis.call('SET', key, doc, 'PX', ttl)
  local tag, job = string.match(key, '^(.-}):result:(.*)$')
  if tag and redis.call('EXISTS', tag .. ':wait:' .. job) == 1 then
    local done = tag .. ':done:' .. job
    redis.call('RPUSH', done, '1')
    redis.call('PEXPIRE', done, 60000)
  end
end
-- Key marking a caller-chosen job id as taken (see SEND); derived from the stream key.
local function unique_key(stream, job)
  return string.sub(stream, 1, -8) .. ':unique:' .. job
end
-- Once a job settled, its id stays taken only as long as its outcome is kept.
local function release_unique(stream, job, ttl)
  local key = unique_key(stream, job)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) else redis.call('DEL', key) end
end
local function field(flat, name)
  for i = 1, #flat, 2 do if flat[i] == name then return flat[i + 1] end end
  return nil
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS: stream, meta, delayed
# ARGV: max_length (0 = none), max_message_bytes (0 = none), unique ('1' = the job ids
#       were chosen by the caller: enqueue each at most once), due (0 = now; > 0 = epoch
#       ms; < 0 = -delay ms from the server's clock), n, then n x (job id, type, body,
#       key ('' = none))
# Bounds stored in the meta hash (written from the config by workers and `check`) win over
# the caller's. Returns {entry ids ('' for delayed jobs), duplicate flags}, or an error
# "QUEUEFULL <bound>" / "TOOLARGE <size> <limit>"; nothing is added then.
SEND = (
    "#!lua\n"
    + _PRELUDE
    + """
local meta = redis.call('HMGET', KEYS[2], 'max_length', 'max_message_bytes')
local maxlen = tonumber(meta[1] or ARGV[1])
local maxbytes = tonumber(meta[2] or ARGV[2])
local unique, due, n = ARGV[3] == '1', tonumber(ARGV[4]), tonumber(ARGV[5])
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
for i = 0, n - 1 do
  local b = 6 + i * 4
  local job, typ, body, key = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local ukey = unique_key(KEYS[1], job)
  if unique and redis.call('EXISTS', ukey) == 1 then
    ids[i + 1] = redis.call('GET', ukey)
    dups[i + 1] = 1
  else
    if due > 0 then
      local doc = {id = job, type = typ, body = body, attempt = 1, enqueued = now}
      if key ~= '' then doc.key = key end
      if unique then doc.unique = '1' end
      redis.call('ZADD', KEYS[3], due, cjson.encode(doc))
      ids[i + 1] = ''
    else
      local fields = {'id', job, 'type', typ, 'body', body}
      if key ~= '' then fields[#fields + 1] = 'key'; fields[#fields + 1] = key end
      -- Marks an id the caller chose: its dedupe key is released when the job settles.
      if unique then fields[#fields + 1] = 'unique'; fields[#fields + 1] = '1' end
      ids[i + 1] = redis.call('XADD', KEYS[1], '*', unpack(fields))
    end
    if unique then redis.call('SET', ukey, ids[i + 1]) end
    dups[i + 1] = 0
  end
end
return {ids, dups}
"""
)

# KEYS: stream, then result keys referenced by index
# ARGV: group, consumer, result_ttl_ms, n,
#       then n x (entry id, job id if it was sent with a caller-chosen id else '',
#                 result key index or 0, outcome document)
# Acknowledges and deletes each entry this consumer still owns and stores its result.
# Returns {ids pending for another consumer (fenced), ids not pending at all (settled
# already: by an earlier call of ours whose reply was lost, or by another member)}.
ACK = (
    "#!lua flags=allow-oom\n"
    + _PRELUDE
    + """
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
    if ARGV[b + 1] ~= '' then release_unique(stream, ARGV[b + 1], ttl) end
    local k = tonumber(ARGV[b + 2])
    if k > 0 then store_outcome(KEYS[k], ARGV[b + 3], ttl) end
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
"""
)

# KEYS: stream, delayed
# ARGV: group, consumer, entry id, delay_ms, payload (JSON envelope with attempt + 1)
# Returns 1 when moved to the delayed set, 0 when fenced.
RETRY = (
    "#!lua\n"
    + _PRELUDE
    + """
local stream, group, me, id = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if not owned(stream, group, id, me) then return 0 end
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[4]), ARGV[5])
redis.call('XACK', stream, group, id)
redis.call('XDEL', stream, id)
return 1
"""
)

# KEYS: stream, dead, result key
# ARGV: group, consumer, entry id, result_ttl_ms, outcome document ('' = none), then
#       field/value pairs of the dead-letter entry
# Returns the dead-letter entry id, or false when fenced.
DEAD = (
    "#!lua\n"
    + _PRELUDE
    + """
local stream, group, me, id = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if not owned(stream, group, id, me) then return false end
store_outcome(KEYS[3], ARGV[5], tonumber(ARGV[4]))
local job = ARGV[3]
for i = 6, #ARGV - 1, 2 do
  if ARGV[i] == 'id' then job = ARGV[i + 1]; break end
end
release_unique(stream, job, tonumber(ARGV[4]))
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
fields[#fields + 1] = 'failed_at'
fields[#fields + 1] = tostring(now_ms())
local dead_id = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XACK', stream, group, id)
redis.call('XDEL', stream, id)
return dead_id
"""
)

# KEYS: stream, delayed
# ARGV: limit
# Moves due jobs from the delayed set into the stream. Returns {moved, ms until next due
# or -1 when the set is empty}.
PROMOTE = (
    "#!lua\n"
    + _PRELUDE
    + """
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
"""
)

# KEYS: stream, dead
# ARGV: group, consumer, min_idle_ms, count, owner ('' = any other consumer),
#       max_deliveries, worker id, result_ttl_ms, suspect_at (0 = off), idle ('1' = the
#       caller runs nothing and may take one suspect), own ('1' = the caller's own
#       entries too: a new owner of an ordered partition takes over everything pending)
# Claims entries idle at least min_idle_ms from other consumers (without JUSTID, so the
# delivery counter counts). Entries past max_deliveries go to the dead-letter stream in
# the same step. An entry that would reach suspect_at deliveries has been held by
# members that vanished time after time: it may be the job that kills them, and
# whatever runs beside it is charged a delivery too when it strikes again. So suspects
# are claimed only by an idle caller, one at a time and with nothing else, to be run
# alone; a busy caller leaves them (unclaimed, their counters untouched) and counts them.
# Returns {claimed: {id, fields, deliveries, suspect}..., dead_count, lost_count,
# suspects_left}.
# allow-oom: taking over stranded entries is how a full broker gets drained after a
# worker died; it adds memory only when it moves an entry to the dead-letter stream,
# and then deletes that entry from its stream in the same step.
RECLAIM = (
    "#!lua flags=allow-oom\n"
    + _PRELUDE
    + """
local stream, dead, group, me = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local min_idle, count, owner = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local max_deliveries, worker = tonumber(ARGV[6]), ARGV[7]
local pending
if owner ~= '' then
  pending = redis.call('XPENDING', stream, group, 'IDLE', min_idle, '-', '+', count, owner)
else
  pending = redis.call('XPENDING', stream, group, 'IDLE', min_idle, '-', '+', count)
end
local suspect_at, idle = tonumber(ARGV[9] or '0'), ARGV[10] == '1'
local function is_suspect(deliveries)
  return suspect_at > 0 and deliveries >= suspect_at
    and not (max_deliveries > 0 and deliveries > max_deliveries)
end
local isolate = false
if idle then
  for _, p in ipairs(pending) do
    if p[2] ~= me and is_suspect(tonumber(p[4]) + 1) then isolate = true; break end
  end
end
local out, dead_n, lost_n, left = {}, 0, 0, 0
local took_suspect = false
for _, p in ipairs(pending) do
  local id, from = p[1], p[2]
  local deliveries = tonumber(p[4]) + 1
  local suspect = is_suspect(deliveries)
  local take = from ~= me or ARGV[11] == '1'
  if take and suspect and (not isolate or took_suspect) then
    left = left + 1
    take = false
  elseif take and isolate and not suspect and not (max_deliveries > 0
      and deliveries > max_deliveries) then
    take = false  -- claimed after the suspect ran alone
  end
  if take then
    local claimed = redis.call('XCLAIM', stream, group, me, min_idle, id)
    local entry = claimed[1]
    if not entry or not entry[2] then
      lost_n = lost_n + 1
    elseif max_deliveries > 0 and deliveries > max_deliveries then
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
      local job = field(entry[2], 'id') or id
      local ttl = tonumber(ARGV[8])
      store_outcome(string.sub(stream, 1, -8) .. ':result:' .. job, cjson.encode({
        state = 'failed', error_type = 'MaxDeliveriesExceeded',
        error = 'delivered ' .. deliveries .. ' times'}), ttl)
      release_unique(stream, job, ttl)
      dead_n = dead_n + 1
    else
      if suspect then took_suspect = true end
      out[#out + 1] = {id, entry[2], deliveries, suspect and 1 or 0}
    end
  end
end
return {out, dead_n, lost_n, left}
"""
)

# KEYS: stream, then one cancel-marker key per entry
# ARGV: group, consumer, entry ids... (same order as the marker keys)
# Resets the idle time of entries this consumer still owns (JUSTID: not a delivery).
# Returns {ids it no longer owns, ids whose job was asked to cancel}.
TOUCH = (
    "#!lua flags=allow-oom\n"
    + _PRELUDE
    + """
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local lost, cancel = {}, {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if owned(stream, group, id, me) then
    redis.call('XCLAIM', stream, group, me, 0, id, 'JUSTID')
    if redis.call('EXISTS', KEYS[i - 1]) == 1 then cancel[#cancel + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
return {lost, cancel}
"""
)

# Finding a job by id: in the stream (at a known entry id, or by scanning up to
# `limit` entries) or in the delayed set. Returns kind, entry id / payload,
# fields / due score, and the pending-entry info when it is being run.
_LOCATE = """
local function job_of(entry)
  local f = entry[2]
  for i = 1, #f, 2 do if f[i] == 'id' then return f[i + 1] end end
  return entry[1]
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
"""

# KEYS: stream, delayed, cancel marker, result key
# ARGV: group, job id, entry id ('' = search the stream), result_ttl_ms, scan limit,
#       control channel, outcome document for a removed job
# A job still waiting (in the stream, not delivered, or in the delayed set) is removed
# and recorded as cancelled. A job being run gets a cancel marker (seen by the owner's
# renewal) and a message on the control channel (seen at once).
# Returns 'removed', 'running' or 'unknown'.
CANCEL = (
    "#!lua\n"
    + _PRELUDE
    + _LOCATE
    + """
local stream, delayed, marker, result = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, job = ARGV[1], ARGV[2]
local ttl = tonumber(ARGV[4])
local kind, where, _, pending = locate(stream, delayed, group, job, ARGV[3], tonumber(ARGV[5]))
if kind == 'stream' and pending then
  redis.call('SET', marker, '1', 'PX', math.max(ttl, 60000))
  redis.call('PUBLISH', ARGV[6], cjson.encode({cancel = job}))
  return 'running'
elseif kind == 'stream' then
  redis.call('XDEL', stream, where)
elseif kind == 'delayed' then
  redis.call('ZREM', delayed, where)
else
  return 'unknown'
end
store_outcome(result, ARGV[7], ttl)
release_unique(stream, job, ttl)
return 'removed'
"""
)

# KEYS: stream, delayed
# ARGV: group, job id, entry id ('' = search), scan limit
# Returns {kind ('stream', 'delayed' or ''), entry id or delayed payload,
#          entry fields or due ms, {owner, idle ms, deliveries} or {}}.
FIND = (
    "#!lua\n"
    + _LOCATE
    + """
local kind, where, what, pending = locate(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3],
                                          tonumber(ARGV[4]))
if not kind then return {'', '', '', {}} end
return {kind, where, what, pending or {}}
"""
)

# KEYS: stream, dead
# ARGV: count, then either dead-letter entry ids, or '' followed by a range (start, end)
#       to take the next `count` entries of
# Re-sends dead-lettered jobs as fresh jobs (attempt 1) and removes them from the
# dead-letter stream, in one step. Returns {re-sent, skipped (no job envelope), id of
# the last entry looked at ('' if none)}.
DLQ_RETRY = (
    "#!lua\n"
    + """
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
    redis.call('XADD', KEYS[1], '*', unpack(fields))
    redis.call('XDEL', KEYS[2], e[1])
    resent = resent + 1
  else
    -- Not a job envelope (e.g. a raw malformed entry): keep it for a human to read.
    skipped = skipped + 1
  end
end
local last = ''
if #entries > 0 then last = entries[#entries][1] end
return {resent, skipped, last}
"""
)

# KEYS: stream
# ARGV: group, consumer
# Deletes a consumer only if it has no pending entries (DELCONSUMER would drop them).
FORGET_CONSUMER = (
    "#!lua flags=allow-oom\n"
    + """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if p[1] ~= nil then return 0 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) + 1
"""
)

# ---------------------------------------------------------------- ordered partitions
# A partition of an ordered queue is owned through a lease: KEYS lease holds
# "<member>:<epoch>" with a TTL; the epoch only grows (KEYS epoch), so every change of
# hands yields a larger fencing token.

# KEYS: lease, epoch; ARGV: member, ttl_ms. Returns the new token, or false if taken.
# (allow-oom: a full broker must still get owners for its partitions to be drained.)
LEASE_ACQUIRE = """#!lua flags=allow-oom
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = ARGV[1] .. ':' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', tonumber(ARGV[2]))
return token
"""

# KEYS: lease; ARGV: token, ttl_ms. Returns 1 if renewed, 0 if the lease is lost.
LEASE_RENEW = """#!lua flags=allow-oom
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# KEYS: lease; ARGV: token. Returns 1 if released, 0 if it was not ours any more.
LEASE_RELEASE = """#!lua flags=allow-oom
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: stream, lease; ARGV: group, consumer, token, count
# Reads new entries only while the caller holds the lease, so a paused owner that
# wakes up after losing it cannot take (and reorder) work. Returns {entries, ''} or,
# when there is nothing new, {{}, id of the newest entry or '0-0'} to block on.
ORDERED_FETCH = """#!lua flags=allow-oom
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return redis.error_reply('FENCED lease lost') end
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', tonumber(ARGV[4]),
                     'STREAMS', KEYS[1], '>')
if r and r[1] and #r[1][2] > 0 then return {r[1][2], ''} end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then return {{}, last[1][1]} end
return {{}, '0-0'}
"""

# ---------------------------------------------------------------- membership
# Heartbeats must go through when the server is out of memory (they are tiny), or a
# full broker would make every worker look dead and nothing could drain it.

# KEYS: member key; ARGV: info, ttl_ms. Returns 1 if the previous heartbeat was still
# alive, 0 if it had expired (peers may have taken our jobs).
HEARTBEAT = """#!lua flags=allow-oom
local alive = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return alive
"""

# KEYS: members sorted set; ARGV: member, ttl_ms, forget_after_ms. Scores are the
# server time each member's heartbeat expires; long-dead members are pruned.
MEMBERS_TOUCH = """#!lua flags=allow-oom
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
return now
"""

# KEYS: stream; ARGV: group. Creates the consumer group (and the stream) unless it
# exists; allow-oom because XGROUP CREATE is refused on a full server, which could then
# never be drained. Every entry in a stream is unprocessed work (acknowledged entries
# are deleted), so a group starts at 0, not $.
ENSURE_GROUP = """#!lua flags=allow-oom
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if ok then return 1 end
if string.find(tostring(err), 'BUSYGROUP', 1, true) then return 0 end
return redis.error_reply(tostring(err))
"""

# Returns the server's TIME as {seconds, microseconds}. (A script rather than the TIME
# command because the client library's TIME reply conversion drops sub-millisecond
# precision into the wrong field.)
SERVER_TIME = """#!lua flags=no-writes,allow-oom
return redis.call('TIME')
"""

ALL = {
    "send": SEND,
    "ack": ACK,
    "retry": RETRY,
    "dead": DEAD,
    "promote": PROMOTE,
    "reclaim": RECLAIM,
    "touch": TOUCH,
    "cancel": CANCEL,
    "find": FIND,
    "server_time": SERVER_TIME,
    "ensure_group": ENSURE_GROUP,
    "heartbeat": HEARTBEAT,
    "members_touch": MEMBERS_TOUCH,
    "lease_acquire": LEASE_ACQUIRE,
    "lease_renew": LEASE_RENEW,
    "lease_release": LEASE_RELEASE,
    "ordered_fetch": ORDERED_FETCH,
    "dlq_retry": DLQ_RETRY,
    "forget_consumer": FORGET_CONSUMER,
}
