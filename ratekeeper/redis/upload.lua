-- Count one file upload if it fits, mirroring Engine.reserve_upload.
-- KEYS: session hash.  ARGV: now, size in bytes.
-- Reply: {0} unknown | {1, allowed 0/1, reason, files_used, max_files}.
local session = KEYS[1]
local h = redis.call('HMGET', session, 'st', 'dl', 'fe', 'fs', 'fm', 'fu')
if not h[1] then
  return {0}
end
local now = now_us(ARGV[1])
local status = effective_status(h[1], h[2], now)
local max_files = tonumber(h[5])
local used = tonumber(h[6])
if status ~= 'active' then
  return {1, 0, status, used, max_files}
end
if h[3] ~= '1' then
  return {1, 0, 'uploads_disabled', used, max_files}
end
if tonumber(ARGV[2]) > tonumber(h[4]) * 1048576 then
  return {1, 0, 'file_too_large', used, max_files}
end
if used >= max_files then
  return {1, 0, 'too_many_files', used, max_files}
end
used = redis.call('HINCRBY', session, 'fu', 1)
return {1, 1, 'allowed', used, max_files}
