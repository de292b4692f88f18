-- now_ms(): the server's clock in epoch milliseconds. Due times come from it, never
-- from a worker's clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
