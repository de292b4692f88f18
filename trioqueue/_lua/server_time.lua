#!lua flags=no-writes,allow-oom
-- server_time: the server's clock.
-- KEYS: none
-- ARGV: none
-- Reply: {seconds, microseconds}
-- A script rather than the TIME command because the client library's TIME reply
-- conversion drops sub-millisecond precision into the wrong field.
return redis.call('TIME')
