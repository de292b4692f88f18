#!lua flags=allow-oom
-- pause: pause or resume a queue, and tell the running workers at once.
-- KEYS: the queue's pause flag (P:{Q:0}:paused)
-- ARGV: '1' = pause, '' = resume; control channel; queue name
-- Reply: 1 when the state changed, 0 when the queue already was in it
-- allow-oom: an operator must be able to stop (and restart) consumption of a queue
-- on a full server too; the flag is one short string.
-- Workers also read the flag once per worker.block (a message missed while their
-- subscription was down, a worker started later).
local changed = 0
local kind = 'resume'
if ARGV[1] == '1' then
  kind = 'pause'
  if redis.call('SET', KEYS[1], '1', 'NX') then changed = 1 end
else
  changed = redis.call('DEL', KEYS[1])
end
redis.call('PUBLISH', ARGV[2], cjson.encode({[kind] = ARGV[3]}))
return changed
