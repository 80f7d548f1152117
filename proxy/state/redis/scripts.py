"""The Lua scripts behind every step of the Redis team store that a race could break.

Each runs atomically inside Redis. Every key a script touches, declared or built from a prefix, starts
with the same hash tag (``{sr}``), so all of them live in one slot. Times come from Redis ``TIME`` or
from ``PX`` expiries (the server's clock), never from a replica's clock, so skew between hosts cannot
stretch a window or steal a lease. Lua numbers come back to Redis as integers: fractions go as strings.
"""

# KEYS: users set, user record, key-hash index. ARGV: name, record JSON.
ADD_USER = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'name' end
if redis.call('EXISTS', KEYS[3]) == 1 then return 'key' end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[1], ARGV[1])
return 'ok'
"""

# KEYS: user record, new key-hash index. ARGV: name, record JSON, key-hash index prefix.
# 1 saved, 0 no such user, -1 the new key hash belongs to someone else.
SAVE_USER = """
local old = redis.call('GET', KEYS[1])
if not old then return 0 end
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[1] then return -1 end
local old_hash = cjson.decode(old)['key_hash']
local new_key = KEYS[2]
if ARGV[3] .. old_hash ~= new_key then redis.call('DEL', ARGV[3] .. old_hash) end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', new_key, ARGV[1])
return 1
"""

# KEYS: users set, user record, login. ARGV: name, key-hash index prefix.
REMOVE_USER = """
local old = redis.call('GET', KEYS[2])
if not old then return 0 end
local index = ARGV[2] .. cjson.decode(old)['key_hash']
if redis.call('GET', index) == ARGV[1] then redis.call('DEL', index) end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SREM', KEYS[1], ARGV[1])
return 1
"""

# KEYS: key-hash index. ARGV: user record prefix. The user's record, or nil: one round trip.
USER_BY_KEY = """
local name = redis.call('GET', KEYS[1])
if not name then return false end
return redis.call('GET', ARGV[1] .. name)
"""

# KEYS: user record, login. ARGV: expected version ('' for none), login JSON, '1' for the server's own
# login (the owner's, kept without a user record). 1 saved, 0 not.
PUT_LOGIN = """
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] ~= '' then
  local current = redis.call('GET', KEYS[2])
  if not current then return 0 end
  if tonumber(cjson.decode(current)['version']) ~= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""

# KEYS: lease. ARGV: token, ttl ms. Taken (or extended by its own holder): 1; held by another: 0.
ACQUIRE_LEASE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease. ARGV: token. Compare-and-delete: only the holder frees it.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A sliding-window log per limit key: a sorted set (reservation id -> expiry, Redis time in seconds)
# and a hash (reservation id -> amount, plus '_t', the running total of unexpired amounts).
# KEYS: per rule, its sorted set then its hash. ARGV: reservation id, then per rule limit, window, amount.
# Granted: {1, now, totals}; refused: {0, rule index (1-based), retry_after, used} (fractions as strings).
# The sliding-window check-and-reserve shared by RESERVE and ADMIT, as a Lua function: ``ko`` KEYS and
# ``ao`` ARGV come before the rules (ARGV[id] is the reservation id). Returns now, or nil, the refused
# rule's index and when it frees enough.
_RESERVE_FUNCTION = """
local function reserve(ko, ao, id)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local rules = (#KEYS - ko) / 2
  for i = 1, rules do
    local z, h = KEYS[ko + 2 * i - 1], KEYS[ko + 2 * i]
    local limit, window, amount = tonumber(ARGV[ao + 3 * i - 2]), tonumber(ARGV[ao + 3 * i - 1]), tonumber(ARGV[ao + 3 * i])
    local expired = redis.call('ZRANGEBYSCORE', z, '-inf', now)
    if #expired > 0 then
      local gone = 0
      for _, member in ipairs(expired) do gone = gone + (tonumber(redis.call('HGET', h, member)) or 0) end
      redis.call('HDEL', h, unpack(expired))
      redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
      redis.call('HINCRBY', h, '_t', -gone)
    end
    local used = tonumber(redis.call('HGET', h, '_t')) or 0
    if used + amount > limit then
      local excess = used + amount - limit
      local entries = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES')
      for j = 1, #entries, 2 do
        excess = excess - (tonumber(redis.call('HGET', h, entries[j])) or 0)
        if excess <= 0 then return nil, i, math.max(tonumber(entries[j + 1]) - now, 0.001), used end
      end
      return nil, i, window, used
    end
  end
  local totals = {}
  for i = 1, rules do
    local z, h = KEYS[ko + 2 * i - 1], KEYS[ko + 2 * i]
    local window, amount = tonumber(ARGV[ao + 3 * i - 1]), tonumber(ARGV[ao + 3 * i])
    redis.call('ZADD', z, now + window, ARGV[id])
    redis.call('HSET', h, ARGV[id], amount)
    totals[i] = redis.call('HINCRBY', h, '_t', amount)
    local ttl = math.ceil(window * 1000) + 1000
    redis.call('PEXPIRE', z, ttl)
    redis.call('PEXPIRE', h, ttl)
  end
  return now, totals
end
"""

RESERVE = _RESERVE_FUNCTION + """
local now, refused, retry, used = reserve(0, 1, 1)
if not now then return {0, tostring(refused), tostring(retry), used} end
return {1, tostring(now), refused}
"""

# KEYS: per settled key, its sorted set then its hash. ARGV: reservation id, then the new amounts.
# A reservation already expired (or pruned) is left alone.
SETTLE = """
for i = 1, #KEYS / 2 do
  local z, h = KEYS[2 * i - 1], KEYS[2 * i]
  local old = tonumber(redis.call('HGET', h, ARGV[1]))
  if old and redis.call('ZSCORE', z, ARGV[1]) then
    local new = tonumber(ARGV[i + 1])
    redis.call('HSET', h, ARGV[1], new)
    redis.call('HINCRBY', h, '_t', new - old)
  end
end
return 1
"""

# An owner's request: whether any user exists (then keys are required), and the owner's stored login.
# KEYS: users set, the owner's login. Returns {0|1, login JSON or false}.
OWNER_STATE = """
return {redis.call('EXISTS', KEYS[1]), redis.call('GET', KEYS[2])}
"""

# The common path of a team user's request in one round trip.
# KEYS: key-hash index, user record, login, then per rule its sorted set and hash (as RESERVE).
# ARGV: expected name, expected generation, plan-windows key prefix, reservation id, then per rule
# limit, window, amount. Returns {'stale'} | {'refused', rule index, retry_after} |
# {'ok', now, login JSON or false, plan windows JSON or false, totals}, totals as RESERVE's.
ADMIT = _RESERVE_FUNCTION + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'stale'} end
local record = redis.call('GET', KEYS[2])
if not record then return {'stale'} end
local user = cjson.decode(record)
if tostring(user['generation']) ~= ARGV[2] or user['disabled'] == true then return {'stale'} end
local now, refused, retry, used = reserve(3, 4, 4)
if not now then return {'refused', tostring(refused), tostring(retry), used} end
local totals = refused
local login = redis.call('GET', KEYS[3])
local windows = false
if login then
  local account = cjson.decode(login)['account_id']
  if type(account) == 'string' then windows = redis.call('GET', ARGV[3] .. 'account:' .. account) end
end
return {'ok', tostring(now), login or false, windows, totals}
"""
