-- tally(history, ttl, counts): add one batch's totals to the minute's history hash, one
-- HINCRBY per non-zero field, and keep the hash `ttl` ms; nothing when `ttl` is 0.
-- `counts` is a flat {field, amount, ...} list (docs/reference/wire-format.md, "History").
local function tally(history, ttl, counts)
  if ttl <= 0 then return end
  local any = false
  for i = 1, #counts, 2 do
    local amount = tonumber(counts[i + 1])
    if amount > 0 then
      redis.call('HINCRBY', history, counts[i], amount)
      any = true
    end
  end
  if any then redis.call('PEXPIRE', history, ttl) end
end
