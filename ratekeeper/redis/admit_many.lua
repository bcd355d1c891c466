-- Several admissions in one command, in order, each exactly as admit.lua makes it (standalone
-- Redis only: the sessions' keys may live on any slot). The batch is atomic as a whole, which
-- each admission is anyway; every admission sees the same `now`.
-- KEYS: session hash and window list of each admission, in order.
-- ARGV: now, then per admission its secret digest and '1' to return the session.
-- Reply: the admissions' replies (decide.lua) joined by newlines (no reply contains one:
-- the session's meta is compact JSON, which escapes newlines).
local now = ARGV[1]
if now == '' then
  now = int(now_us(''))
end
local replies = {}
local k = 1
for i = 2, #ARGV, 2 do
  replies[#replies + 1] = admit_one(KEYS[k], KEYS[k + 1], now, ARGV[i], ARGV[i + 1] == '1')
  k = k + 2
end
return table.concat(replies, '\n')
