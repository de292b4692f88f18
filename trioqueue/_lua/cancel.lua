#!lua
-- cancel: remove a job still waiting, or ask the worker running it to cancel it.
-- KEYS: stream, delayed, and the job's cancel marker, result, wait, done and unique keys,
--       then the partition's meta hash and events stream
-- ARGV: group, job id, entry id ('' = search the stream), result_ttl_ms, scan limit,
--       control channel, outcome document for a removed job
-- Reply: 'removed', 'running' or 'unknown'
-- A job still waiting (in the stream, not delivered, or in the delayed set) is removed
-- and recorded as cancelled (the document: trioqueue/_outcome.py). A job being run
-- gets a cancel marker (seen by the owner's renewal, touch.lua) and a message on the
-- control channel (seen at once). A removed job gets a 'cancelled' event when the meta
-- hash's `events` length turns events on.
-- @include locate
-- @include store_outcome
-- @include release_unique
-- @include emit
local stream, delayed, marker = KEYS[1], KEYS[2], KEYS[3]
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
store_outcome(KEYS[4], KEYS[5], KEYS[6], ARGV[7], ttl)
release_unique(KEYS[7], ttl)
emit(KEYS[9], tonumber(redis.call('HGET', KEYS[8], 'events') or '0'),
     {'kind', 'cancelled', 'job', job})
return 'removed'
