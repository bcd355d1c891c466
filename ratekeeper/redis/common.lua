-- Prepended to every script of the Redis backend (ratekeeper/redis/_scripts.py).
-- Times are integer microseconds held in Lua doubles: exact up to 2^53 us (~285 years).
-- ARGV[1] is always "now": empty means "read Redis TIME" (production: one clock for every
-- gateway), a number is a clock the caller injected (tests drive ManualClock through it).
local WINDOW_US = 60000000

local function now_us(arg)
  if arg == '' then
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return tonumber(arg)
end

-- Redis would print a large Lua number in exponent form; keep stored numbers integral text.
local function int(x)
  return string.format('%d', x)
end

-- A relative TTL in milliseconds that reaches at least `until_us`, plus a safety margin.
local function ttl_ms(until_us, now, margin_ms)
  local ms = math.ceil((until_us - now) / 1000) + margin_ms
  if ms < 1 then
    ms = 1
  end
  return ms
end

-- Extend a key's TTL so that it lives at least `ms` more milliseconds (never shortens it).
local function extend_ttl(key, ms)
  if redis.call('PTTL', key) < ms then
    redis.call('PEXPIRE', key, ms)
  end
end

-- The status a reader sees: a due session reads "expired" before any sweep flips it.
local function effective_status(status, deadline, now)
  if status == 'active' and now >= tonumber(deadline) then
    return 'expired'
  end
  return status
end
