-- Create a session, mirroring Engine.create_session's clock arithmetic.
-- KEYS: session hash.  ARGV: now (monotonic), wall, digest, session id, meta JSON,
--   expires_after_s, limit, uploads enabled (0/1), max_file_size MB, max_files,
--   retention_us, ttl margin ms.
-- Reply: {0} the id exists | {1, expires_at, created_at_us, deadline_us}.
local session = KEYS[1]
if redis.call('EXISTS', session) == 1 then
  return {0}
end
local mono, wall
if ARGV[1] == '' then
  mono = now_us('')
  wall = mono
else
  mono = tonumber(ARGV[1])
  wall = tonumber(ARGV[2])
end
-- expires_at = floor(wall) + seconds: a session never lives longer than it asked for.
local expires_at = math.floor(wall / 1000000) + tonumber(ARGV[6])
local deadline = mono + (expires_at * 1000000 - wall)
redis.call('HSET', session,
  'd', ARGV[3], 'id', ARGV[4], 'm', ARGV[5], 'st', 'active', 'dl', int(deadline),
  'n', ARGV[7], 'fe', ARGV[8], 'fs', ARGV[9], 'fm', ARGV[10], 'fu', 0,
  'ea', int(expires_at), 'ca', int(wall))
-- Nothing outlives its retention, even if every sweeper dies.
redis.call('PEXPIRE', session, ttl_ms(deadline + tonumber(ARGV[11]), mono, tonumber(ARGV[12])))
return {1, expires_at, wall, deadline}
