#!lua
-- find: where a job is, for status (the entry fields and delayed-set document are read
-- by trioqueue/_envelope.py).
-- KEYS: stream, delayed
-- ARGV: group, job id, entry id ('' = search the stream), scan limit
-- Reply: {kind ('stream', 'delayed' or ''), entry id or delayed payload, entry fields or
--        due ms, {owner, idle ms, deliveries} or {}}
-- @include locate
local kind, where, what, pending = locate(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3],
                                          tonumber(ARGV[4]))
if not kind then return {'', '', '', {}} end
return {kind, where, what, pending or {}}
