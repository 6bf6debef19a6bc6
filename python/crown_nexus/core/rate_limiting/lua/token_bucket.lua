-- Token bucket as GCRA (crown_nexus._pure.rate_window.GCRA, same arithmetic): the level L is
-- kept in units where one request is w units and the bucket drains `limit` units per us;
-- capacity is burst * w. Allowed iff L_now + cost * w <= capacity. State: one string
-- "level last_seen_us", written with SET ... PX so it expires when the bucket is empty.
-- KEYS[1] key; ARGV limit, window_us, cost, burst[, now_us]. Clock: the server's (TIME), in us.
-- Returns {allowed, count, reset_us} (see sliding_window.lua).
local function fdiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local function cdiv(a, b) return -fdiv(-a, b) end
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local w = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local now = tonumber(ARGV[5])  -- tests pin the clock; production omits it
if not now then
  local tm = redis.call('TIME')
  now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
end
local level = 0
local state = redis.call('GET', key)
if state then
  local sl, st = string.match(state, '^(%d+) (%d+)$')
  if sl then
    local last = tonumber(st)
    if now < last then now = last end
    level = tonumber(sl) - (now - last) * limit
    if level < 0 then level = 0 end
  end
end
local cap = burst * w
local new = level + cost * w
if new > cap then
  return {0, cdiv(level, w), cdiv(new - cap, limit)}
end
local reset = cdiv(new, limit)
redis.call('SET', key, string.format('%d %d', new, now), 'PX', math.max(1, math.ceil(reset / 1000)))
return {1, cdiv(new, w), reset}
