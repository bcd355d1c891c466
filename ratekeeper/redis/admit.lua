-- One admission (see decide.lua for the rule and the reply).
-- KEYS: session hash, window list.  ARGV: now, secret digest, '1' to return the session.
return admit_one(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3] == '1')
