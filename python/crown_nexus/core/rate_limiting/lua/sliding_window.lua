-- Sliding-window counter (crown_nexus._pure.rate_window.SlidingWindowCounter, same arithmetic):
-- bucket b = floor(now_us / w), e = now_us - b*w, used = curr + floor(prev * (w - e) / w);
-- a hit is allowed iff used + cost <= limit. State: hash {b, p, c, t} (t = last time seen).
-- KEYS[1] key; ARGV limit, window_us, cost[, now_us]. Clock: the server's (TIME), in microseconds.
-- Returns {allowed, count, reset_us}: reset_us is, when allowed, the time until the count is
-- back to zero; when denied, the time until a hit of the same cost would be admitted.
local function fdiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local w = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])  -- tests pin the clock; production omits it
if not now then
  local tm = redis.call('TIME')
  now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
end
local st = redis.call('HMGET', key, 'b', 'p', 'c', 't')
local prev, curr = 0, 0
local b0 = tonumber(st[1])
if b0 then
  local last = tonumber(st[4])
  if now < last then now = last end
  local bn = fdiv(now, w)
  if bn == b0 then
    prev = tonumber(st[2]); curr = tonumber(st[3])
  elseif bn == b0 + 1 then
    prev = tonumber(st[3])
  end
end
local b = fdiv(now, w)
local start = b * w
local used = curr + fdiv(prev * (w - (now - start)), w)
if used + cost <= limit then
  curr = curr + cost
  redis.call('HSET', key, 'b', string.format('%d', b), 'p', string.format('%d', prev),
             'c', string.format('%d', curr), 't', string.format('%d', now))
  redis.call('PEXPIRE', key, math.ceil((start + 2 * w - now) / 1000))
  return {1, used + cost, start + w + fdiv(w * (curr - 1), curr) + 1 - now}
end
local r = limit - cost - curr
if r >= 0 then
  return {0, used, start + fdiv(w * (prev - r - 1), prev) + 1 - now}
end
r = limit - cost
return {0, used, start + w + fdiv(w * (curr - r - 1), curr) + 1 - now}
