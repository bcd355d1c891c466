-- Last step of a sweep on one shard: settle the claimed entries.
-- KEYS: shard index, expired purge set.
-- ARGV: now, retention_us, ttl margin ms, count flipped F, count dropped D,
--   F flipped ids, D dropped ids, then (id, deadline_us) pairs to restore.
local index, expired = KEYS[1], KEYS[2]
local now = now_us(ARGV[1])
local purge_at = int(now + tonumber(ARGV[2]))
local flipped, dropped = tonumber(ARGV[4]), tonumber(ARGV[5])
local i = 6
for _ = 1, flipped do
  redis.call('ZREM', index, ARGV[i])
  redis.call('ZADD', expired, purge_at, ARGV[i])
  i = i + 1
end
if flipped > 0 then
  extend_ttl(expired, ttl_ms(tonumber(purge_at), now, tonumber(ARGV[3])))
end
for _ = 1, dropped do
  redis.call('ZREM', index, ARGV[i])
  i = i + 1
end
while i < #ARGV do
  redis.call('ZADD', index, 'XX', ARGV[i + 1], ARGV[i])
  i = i + 2
end
return 1
