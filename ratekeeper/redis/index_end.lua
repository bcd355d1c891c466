-- Move a session that ended outside a sweep (cancelled) from the index to its purge set.
-- KEYS: shard index, shard purge set.  ARGV: now, session id, retention_us, ttl margin ms.
local now = now_us(ARGV[1])
local purge_at = now + tonumber(ARGV[3])
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], int(purge_at), ARGV[2])
extend_ttl(KEYS[2], ttl_ms(purge_at, now, tonumber(ARGV[4])))
return 1
