-- release_unique(unique, ttl): once a job settled, its caller-chosen id (see send.lua)
-- stays taken only as long as its outcome is kept.
local function release_unique(unique, ttl)
  if ttl > 0 then redis.call('PEXPIRE', unique, ttl) else redis.call('DEL', unique) end
end
