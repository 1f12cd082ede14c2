"""The Redis side of the quota backend: one Lua script per operation.

A script runs atomically on the server, so a check reads and updates every
key of a request with no other client in between, in one round trip. Time is
the server's ``TIME`` (microseconds), never the caller's clock: processors
with skewed clocks agree, and with Redis >= 5 scripts are replicated by
their effects, so replicas store the same values the primary computed.

The formulas are those of ``gcra.py`` (the memory backend); the shared test
suite checks both. Values are stored as integer microseconds formatted with
``%.0f``, because Lua's ``tostring`` would print large numbers in exponent
form and lose digits.
"""

# KEYS: n_rate GCRA keys, then the concurrency lease sets (sorted sets:
#   member = lease id, score = its expiry).
# ARGV: n_rate; per rate key: interval_us, tolerance_us; per slot key:
#   limit, lease_us, lease_id.
# Returns {allowed, per rate: remaining, reset_ms, retry_ms, per slot: in_use}.
CHECK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n_rate = tonumber(ARGV[1])
local n_slot = #KEYS - n_rate
local allowed = 1
local new_tats, consumed, untouched, in_use = {}, {}, {}, {}

for i = 1, n_rate do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local stored = redis.call('GET', KEYS[i])
  local base = stored and tonumber(stored) or now
  if base < now then base = now end
  local new_tat = base + interval
  local allow_at = new_tat - tolerance
  if allow_at > now then allowed = 0 end
  new_tats[i] = new_tat
  consumed[i] = {math.floor((now + tolerance - new_tat) / interval), math.ceil((new_tat - now) / 1000), 0}
  local left = math.floor((now + tolerance - base) / interval)
  if left < 0 then left = 0 end
  local retry = allow_at - now
  if retry < 0 then retry = 0 end
  untouched[i] = {left, math.ceil((base - now) / 1000), math.ceil(retry / 1000)}
end

local s = 2 + 2 * n_rate
for j = 1, n_slot do
  local key = KEYS[n_rate + j]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  in_use[j] = redis.call('ZCARD', key)
  if in_use[j] >= tonumber(ARGV[s + 3 * (j - 1)]) then allowed = 0 end
end

if allowed == 1 then
  for i = 1, n_rate do
    -- The key means nothing once its TAT has passed: let it expire then.
    redis.call('SET', KEYS[i], string.format('%.0f', new_tats[i]),
               'PX', math.ceil((new_tats[i] - now) / 1000) + 1)
  end
  for j = 1, n_slot do
    local a = s + 3 * (j - 1)
    local lease_us = tonumber(ARGV[a + 1])
    redis.call('ZADD', KEYS[n_rate + j], string.format('%.0f', now + lease_us), ARGV[a + 2])
    -- The newest lease expires last (one spec per key), so the set may go with it.
    redis.call('PEXPIRE', KEYS[n_rate + j], math.ceil(lease_us / 1000) + 1)
  end
end

local out = {allowed}
for i = 1, n_rate do
  local r = allowed == 1 and consumed[i] or untouched[i]
  out[#out + 1] = r[1]
  out[#out + 1] = r[2]
  out[#out + 1] = r[3]
end
for j = 1, n_slot do out[#out + 1] = in_use[j] end
return out
"""

# KEYS: lease sets; ARGV: the lease id for each key, in the same order.
RELEASE = """
for i = 1, #KEYS do redis.call('ZREM', KEYS[i], ARGV[i]) end
return #KEYS
"""

# A budget is a hash {used, since, rate, period}: ``used`` tokens at time
# ``since``, refilled at ``rate`` tokens per microsecond. It lives one
# period past the moment it is full again, so a late reconcile finds it.
_BUDGET_LOAD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'used', 'since', 'rate', 'period')
local used, rate, period = 0, nil, nil
if h[1] then
  rate, period = tonumber(h[3]), tonumber(h[4])
  used = tonumber(h[1]) - (now - tonumber(h[2])) * rate
  if used < 0 then used = 0 end
end
local function store()
  redis.call('HSET', KEYS[1], 'used', string.format('%.17g', used), 'since', string.format('%.0f', now),
             'rate', string.format('%.17g', rate), 'period', string.format('%.0f', period))
  redis.call('PEXPIRE', KEYS[1], math.ceil((used / rate + period) / 1000) + 1)
end
"""

# ARGV: amount, limit, period_us, epsilon. Returns {granted, remaining}.
RESERVE = (
    _BUDGET_LOAD
    + """
local amount, limit, eps = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
rate, period = limit / tonumber(ARGV[3]), tonumber(ARGV[3])
local granted = 0
if used + amount <= limit + eps then
  used = used + amount
  granted = 1
  store()
end
local remaining = math.floor(limit - used + eps)
if remaining < 0 then remaining = 0 end
return {granted, remaining}
"""
)

# ARGV: difference (actual - reserved). Returns 1 if applied, 0 if the budget
# is gone (it refilled and expired: nothing left to settle against).
RECONCILE = (
    _BUDGET_LOAD
    + """
if not h[1] then return 0 end
used = used + tonumber(ARGV[1])
if used < 0 then used = 0 end
store()
return 1
"""
)
