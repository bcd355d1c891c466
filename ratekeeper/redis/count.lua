-- Active sessions on one shard that are not yet due (a due one no longer takes a place).
-- KEYS: shard index.  ARGV: now.
local now = now_us(ARGV[1])
return redis.call('ZCOUNT', KEYS[1], '(' .. int(now), '+inf')
