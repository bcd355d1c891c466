-- Cancel an active session (idempotent; a no-op on an expired one), mirroring Engine.cancel.
-- KEYS: session hash, window list.  ARGV: now, retention_us, ttl margin ms.
-- Reply: {0} unknown | {code, status, expires_at, created_at_us, meta JSON, limit, now}
--   where code 1 means "cancelled by this call" and 2 "left as it was".
local session, window = KEYS[1], KEYS[2]
local h = redis.call('HMGET', session, 'st', 'dl', 'ea', 'ca', 'm', 'n')
if not h[1] then
  return {0}
end
local now = now_us(ARGV[1])
local status = effective_status(h[1], h[2], now)
local code = 2
if status == 'active' then
  redis.call('HSET', session, 'st', 'cancelled')
  redis.call('DEL', window)
  redis.call('PEXPIRE', session, ttl_ms(now + tonumber(ARGV[2]), now, tonumber(ARGV[3])))
  status = 'cancelled'
  code = 1
end
return {code, status, h[3], h[4], h[5], h[6], now}
