-- store_outcome(result, wait, done, doc, ttl): store a job's outcome document under
-- its result key for `ttl` ms and wake a client waiting for it (see Client.result):
-- the client sets `wait` while it waits and blocks on `done`.
-- Format of `doc`: docs/reference/wire-format.md, "Outcome documents"; in Python,
-- trioqueue/_outcome.py.
local function store_outcome(result, wait, done, doc, ttl)
  if ttl <= 0 or doc == '' then return end
  redis.call('SET', result, doc, 'PX', ttl)
  if redis.call('EXISTS', wait) == 1 then
    redis.call('RPUSH', done, '1')
    redis.call('PEXPIRE', done, 60000)
  end
end
