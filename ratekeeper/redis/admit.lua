-- The decision rule's only twin (ratekeeper/window.py `decide`): one admission, atomically.
-- KEYS: session hash, window list.  ARGV: now, secret digest.
-- Reply: {0} unknown | {1, limit, remaining} allowed
--      | {2, limit, retry_after_us, reset_after_us} rate limited | {3, limit} expired
--      | {4, limit} cancelled.
local session, window = KEYS[1], KEYS[2]
local h = redis.call('HMGET', session, 'd', 'st', 'dl', 'n')
if not h[1] or h[1] ~= ARGV[2] then
  return {0}
end
local now = now_us(ARGV[1])
local limit = tonumber(h[4])
if h[2] ~= 'active' or now >= tonumber(h[3]) then
  if h[2] == 'cancelled' then
    return {4, limit}
  end
  return {3, limit}
end
-- The window holds the admissions still counting, oldest first: those at t with t + 60 > now.
local count = redis.call('LLEN', window)
if count > 0 then
  local oldest = tonumber(redis.call('LINDEX', window, 0))
  -- An admission at t0 stops counting at exactly t0 + 60 s; each one is popped once.
  while oldest + WINDOW_US <= now do
    redis.call('LPOP', window)
    count = count - 1
    if count == 0 then
      break
    end
    oldest = tonumber(redis.call('LINDEX', window, 0))
  end
  if count >= limit then
    -- Rejections are not recorded: they consume nothing.
    local newest = tonumber(redis.call('LINDEX', window, -1))
    return {2, limit, oldest + WINDOW_US - now, newest + WINDOW_US - now}
  end
end
redis.call('RPUSH', window, int(now))
if count == 0 then
  -- A fresh list: give it the session's own TTL, so it cannot outlive the session.
  local pttl = redis.call('PTTL', session)
  if pttl > 0 then
    redis.call('PEXPIRE', window, pttl)
  end
end
return {1, limit, limit - count - 1}
