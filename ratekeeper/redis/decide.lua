-- The decision rule's only twin (ratekeeper/_window.py `decide`): one admission, atomically.
-- Prepended (after common.lua) to admit.lua and admit_many.lua, which only differ in how many
-- admissions one call makes.
-- Reply: one string, parsed by ratekeeper/redis/_replies.py `decision`:
--   '0' unknown | '1 limit remaining' allowed, followed by ' expires_at created_at_us meta'
--   when the caller asked for the session | '2 limit retry_after_us reset_after_us' rate
--   limited | '3 limit' expired | '4 limit' cancelled.
-- A string rather than a table: one bulk reply per admission (or per batch) is far cheaper to
-- parse in Python than a nested array.
local function admit_one(session, window, now_arg, digest, want_session)
  local h = redis.call('HMGET', session, 'd', 'st', 'dl', 'n')
  if not h[1] or h[1] ~= digest then
    return '0'
  end
  local now = now_us(now_arg)
  local limit = tonumber(h[4])
  if h[2] ~= 'active' or now >= tonumber(h[3]) then
    if h[2] == 'cancelled' then
      return '4 ' .. h[4]
    end
    return '3 ' .. h[4]
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
      return '2 ' .. h[4] .. ' ' .. int(oldest + WINDOW_US - now) .. ' '
        .. int(newest + WINDOW_US - now)
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
  local reply = '1 ' .. h[4] .. ' ' .. int(limit - count - 1)
  if want_session then
    local s = redis.call('HMGET', session, 'ea', 'ca', 'm')
    reply = reply .. ' ' .. s[1] .. ' ' .. s[2] .. ' ' .. s[3]
  end
  return reply
end
