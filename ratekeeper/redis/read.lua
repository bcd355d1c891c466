-- Read a session as of now, by id (digest '') or by secret digest.
-- KEYS: session hash.  ARGV: now, digest or ''.
-- Reply: {0} unknown | {1, status, expires_at, created_at_us, meta JSON, limit}.
local h = redis.call('HMGET', KEYS[1], 'd', 'st', 'dl', 'ea', 'ca', 'm', 'n')
if not h[2] or (ARGV[2] ~= '' and h[1] ~= ARGV[2]) then
  return {0}
end
local now = now_us(ARGV[1])
return {1, effective_status(h[2], h[3], now), h[4], h[5], h[6], h[7]}
