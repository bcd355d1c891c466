-- Third step of a sweep: flip one due session to expired (exactly once, whoever calls).
-- KEYS: session hash, window list.  ARGV: now, retention_us, ttl margin ms.
-- Reply: {0} nothing to do (unknown, cancelled or already expired)
--      | {1, deadline_us, expires_at, created_at_us, meta JSON, limit, now} flipped
--      | {2, deadline_us} not due on this node's clock yet.
local session, window = KEYS[1], KEYS[2]
local h = redis.call('HMGET', session, 'st', 'dl', 'ea', 'ca', 'm', 'n')
if h[1] ~= 'active' then
  return {0}
end
local now = now_us(ARGV[1])
local deadline = tonumber(h[2])
if now < deadline then
  return {2, deadline}
end
redis.call('HSET', session, 'st', 'expired')
redis.call('DEL', window)
redis.call('PEXPIRE', session, ttl_ms(now + tonumber(ARGV[2]), now, tonumber(ARGV[3])))
return {1, deadline, h[3], h[4], h[5], h[6], now}
