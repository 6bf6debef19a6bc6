-- Sliding log (crown_nexus._pure.rate_window.SlidingLog, same arithmetic): one stamp (us,
-- server clock) per counted request in a list, newest first; a stamp s counts iff s + w > now.
-- Allowed iff count + cost <= limit. The key expires with its newest stamp.
-- KEYS[1] key; ARGV limit, window_us, cost[, now_us].
-- Returns {allowed, count, reset_us} (see sliding_window.lua).
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local w = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])  -- tests pin the clock; production omits it
if not now then
  local tm = redis.call('TIME')
  now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
end
local head = tonumber(redis.call('LINDEX', key, 0))
if head and head > now then now = head end
while true do
  local oldest = redis.call('LINDEX', key, -1)
  if not oldest or tonumber(oldest) + w > now then break end
  redis.call('RPOP', key)
end
local count = redis.call('LLEN', key)
if count + cost > limit then
  local k = count + cost - limit
  local s = tonumber(redis.call('LINDEX', key, count - k))
  return {0, count, s + w - now}
end
local stamp = string.format('%d', now)
for _ = 1, cost do redis.call('LPUSH', key, stamp) end
redis.call('PEXPIRE', key, math.ceil(w / 1000))
return {1, count + cost, w}
