-- Enter a new session in its expiry-index shard.
-- KEYS: shard index.  ARGV: now, session id, deadline_us, retention_us, ttl margin ms.
local index = KEYS[1]
local now = now_us(ARGV[1])
local retention = tonumber(ARGV[4])
redis.call('ZADD', index, ARGV[3], ARGV[2])
-- Entries past deadline + retention + the TTL margin belong to sessions whose keys are gone
-- already: if no sweeper ran that long, drop them here so the index stays bounded without one.
-- (Not sooner: a due session whose keys still live is the sweep's to flip and count.)
local kept_from = now - retention - tonumber(ARGV[5]) * 1000
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. int(kept_from))
extend_ttl(index, ttl_ms(tonumber(ARGV[3]) + retention, now, tonumber(ARGV[5])))
return 1
