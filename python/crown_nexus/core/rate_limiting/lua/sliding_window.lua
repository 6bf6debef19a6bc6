-- Sliding-window counter (crown_nexus._pure.rate_window.SlidingWindowCounter, same arithmetic):
-- bucket b = floor(now_us / w), e = now_us - b*w, used = curr + floor(prev * (w - e) / w);
-- a hit is allowed iff used + cost <= limit. State: one string "b prev curr last_seen_us",
-- written with SET ... PX so the key expires once it no longer matters (bucket b + 2); that
-- moment depends only on b, so writes within the same bucket keep the TTL (KEEPTTL, cheaper).
-- KEYS[1] key; ARGV limit, window_us, cost[, now_us]. Clock: the server's (TIME), in us.
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
local prev, curr = 0, 0
local same_bucket = false
local state = redis.call('GET', key)
if state then
  local sb, sp, sc, st = string.match(state, '^(%d+) (%d+) (%d+) (%d+)$')
  if sb then
    local b0 = tonumber(sb)
    local last = tonumber(st)
    if now < last then now = last end
    local bn = fdiv(now, w)
    if bn == b0 then
      prev = tonumber(sp); curr = tonumber(sc)
      same_bucket = true
    elseif bn == b0 + 1 then
      prev = tonumber(sc)
    end
  end
end
local b = fdiv(now, w)
local start = b * w
local used = curr + fdiv(prev * (w - (now - start)), w)
if used + cost <= limit then
  curr = curr + cost
  if same_bucket then
    redis.call('SET', key, string.format('%d %d %d %d', b, prev, curr, now), 'KEEPTTL')
  else
    redis.call('SET', key, string.format('%d %d %d %d', b, prev, curr, now),
               'PX', math.ceil((start + 2 * w - now) / 1000))
  end
  return {1, used + cost, start + w + fdiv(w * (curr - 1), curr) + 1 - now}
end
local r = limit - cost - curr
if r >= 0 then
  return {0, used, start + fdiv(w * (prev - r - 1), prev) + 1 - now}
end
r = limit - cost
return {0, used, start + w + fdiv(w * (curr - r - 1), curr) + 1 - now}
