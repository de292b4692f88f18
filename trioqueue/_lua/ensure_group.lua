#!lua flags=allow-oom
-- ensure_group: create the consumer group (and the stream) unless it exists.
-- KEYS: stream
-- ARGV: group
-- Reply: 1 when created, 0 when it existed
-- allow-oom: XGROUP CREATE is refused on a full server, which could then never be
-- drained. Every entry in a stream is unprocessed work (acknowledged entries are
-- deleted), so a group starts at 0, not $.
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if ok then return 1 end
if string.find(tostring(err), 'BUSYGROUP', 1, true) then return 0 end
return redis.error_reply(tostring(err))
