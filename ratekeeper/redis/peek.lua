-- First step of a sweep on one shard: purge ended sessions whose retention is over, and list
-- the due ones (deadline <= now: expired exactly at the deadline), earliest first.
-- KEYS: shard index, expired purge set, cancelled purge set.  ARGV: now, max due, max purged.
-- Reply: {purged session ids, {id, deadline, id, deadline, ...}}.
local now = now_us(ARGV[1])
local purged = {}
for i = 2, 3 do
  local gone = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', int(now), 'LIMIT', 0, ARGV[3])
  if #gone > 0 then
    redis.call('ZREM', KEYS[i], unpack(gone))
    for _, id in ipairs(gone) do
      purged[#purged + 1] = id
    end
  end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'WITHSCORES', 'LIMIT', 0,
  ARGV[2])
return {purged, due}
