-- Second step of a sweep: claim due sessions on one shard so no other sweeper takes them.
-- A claim is a lease (the entry's score moves to now + lease), not a removal: if this sweeper
-- dies before it acknowledges, another one claims the entry again once the lease runs out, and
-- the flip script's active -> expired check still reports each session once.
-- KEYS: shard index.  ARGV: now, lease_us, session ids...  Reply: the ids claimed.
local now = now_us(ARGV[1])
local until_us = int(now + tonumber(ARGV[2]))
local claimed = {}
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= now then
    redis.call('ZADD', KEYS[1], 'XX', until_us, ARGV[i])
    claimed[#claimed + 1] = ARGV[i]
  end
end
return claimed
