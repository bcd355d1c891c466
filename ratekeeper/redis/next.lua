-- When a sweep next has work on one shard: microseconds from now (<= 0: now), or nil.
-- KEYS: shard index, expired purge set, cancelled purge set.  ARGV: now.
local now = now_us(ARGV[1])
local best = nil
for i = 1, 3 do
  local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  if first[2] then
    local score = tonumber(first[2])
    if best == nil or score < best then
      best = score
    end
  end
end
if best == nil then
  return false
end
return best - now
