/**
 * The limiter's Lua scripts (run by EVALSHA through the connector's script registry). A key's
 * state lives in `hotpath:l:<name>:{<key>}`; the keys of one call share a hash slot (the limiter
 * groups them by slot), so the scripts run on a Cluster.
 *
 * Whose clock: Redis's (`TIME`, ms). Every process sharing a limit then agrees on when windows
 * start and tokens return, whatever its own clock says. (Redis 7 replicates script effects, not
 * the script, so reading TIME is allowed and replicas stay consistent.)
 *
 * Numbers in Lua are doubles, exact to 2^53: the limiter refuses parameters that could pass it.
 * Scripts decide a batch of keys in one call (the limiter groups the decisions asked for in one
 * tick: one round trip and one script run for many callers). Per key they return
 * { allowed (0|1), remaining, resetMs, retryAfterMs (-1 = never), granted }.
 * `want` (>= cost) asks for a quota lease: when `cost` is allowed, up to `want` tokens are taken
 * (as many as the key has) and `granted` says how many; otherwise granted = cost or 0.
 */

/** What both scripts start with: library functions as locals, and the reply being built. */
const PRELUDE = `-- library functions as locals: a global lookup per use costs more than the arithmetic
local floor, ceil, min = math.floor, math.ceil, math.min
local find, sub, format = string.find, string.sub, string.format
local out = {}
local o = 0
-- States written by this call: a key asked twice in one batch reads its first decision's write,
-- not the MGET taken before it.
local written = {}
local function emit(allowed, remaining, reset, retry, granted)
  out[o + 1] = allowed and 1 or 0
  out[o + 2] = remaining
  out[o + 3] = reset
  out[o + 4] = retry
  out[o + 5] = granted
  o = o + 5
end
`;

/**
 * What both end with: one MGET for every key's state (one redis.call instead of one GET per key:
 * −12 % server time for 64 keys, measured by timing EVALSHA loops with INFO
 * commandstats), then decide(key, state, cost, want) per key. ARGV after the 4 common ones: either
 * one cost and want for every key (#ARGV == 6), or a cost and want per key.
 */
const RUN = `local vals = redis.call('MGET', unpack(KEYS))
if #ARGV == 6 then
  local cost, want = tonumber(ARGV[5]), tonumber(ARGV[6])
  for i = 1, #KEYS do local k = KEYS[i]; decide(k, written[k] or vals[i], cost, want) end
else
  for i = 1, #KEYS do local k = KEYS[i]; decide(k, written[k] or vals[i], tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i])) end
end
return out`;

/**
 * GCRA with the key's state as the string "t d": its theoretical arrival time is t (ms) + d units
 * (one unit is 1/scale ms, the time base of the shared-memory kernel). The batch's MGET and one
 * SET per key (a hash took HMGET, HSET and PEXPIRE: ~20 % more server time).
 *
 * Expiry: a key must outlive its bucket's refill (H = ceil(tau / scale) ms at most). Setting a TTL
 * costs Redis as much again as the SET without one, so a key gets a TTL of 2H + 1 ms when it is
 * written at time t, and later writes keep it (KEEPTTL) while it still outlives the refill,
 * storing d relative to that same t: a busy key's TTL is renewed once per H or so, and an idle
 * key is gone within 2H + 1 ms of its last write. Values written this way end in ".5" (d + 0.5:
 * half a unit, nothing to a decision), the mark that t is when the TTL was set; a value without
 * it (hotpath < 0.2 wrote "now d" with a TTL of its refill) gets a new TTL on its next write.
 * Both forms read the same, so versions sharing a limit agree. Values stay below 3 tau + 2 scale.
 * Batched: KEYS are the decisions' keys (one slot on a Cluster); ARGV: T, tau, scale, peek (0|1),
 * then cost and want (once, or per key). Returns 5 numbers per key, in order.
 */
export const GCRA_SCRIPT = `
${PRELUDE}local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local scale = tonumber(ARGV[3])
local peek = ARGV[4] == '1'
local H = ceil(tau / scale)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
local function decide(key, v, cost, want)
local d = 0
local base = -1
if v then
  local sp = find(v, ' ', 1, true)
  local vt = tonumber(sub(v, 1, sp - 1))
  local el = now - vt
  d = tonumber(sub(v, sp + 1))
  if d % 1 ~= 0 then
    d = d - 0.5
    base = vt
  end
  if el > 0 then
    if el >= ceil(d / scale) then d = 0 else d = d - el * scale end
  end
end
local nd = d + cost * T
local allowed = nd <= tau
local after = d
local granted = 0
if allowed and not peek then
  granted = cost
  if want > cost then
    granted = min(want, floor((tau - d) / T))
    nd = d + granted * T
  end
  after = nd
end
local full = ceil(after / scale)
if allowed and not peek then
  local state
  if base >= 0 and base <= now and now + full <= base + 2 * H then
    state = format('%d %d.5', base, after + (now - base) * scale)
    redis.call('SET', key, state, 'KEEPTTL')
  else
    state = format('%d %d.5', now, after)
    redis.call('SET', key, state, 'PX', 2 * H + 1)
  end
  written[key] = state
end
local remaining = floor((tau - after) / T)
if remaining < 0 then remaining = 0 end
local retry = 0
if not allowed then retry = ceil((nd - tau) / scale) end
emit(allowed, remaining, full, retry, granted)
end
${RUN}
`;

/**
 * Fixed and sliding windows, aligned to Redis time (window n = floor(now / W)). State: the string
 * "n c p" (window index, its count, the count of window n - 1). It expires at the end of window
 * n (fixed) or n + 1 (sliding): the first write in window n sets that TTL and later writes in the
 * same window keep it (KEEPTTL: a TTL costs Redis as much as the SET itself; the deadline is the
 * same for every write of the window, whichever version of hotpath wrote it).
 * Sliding estimate: p × (W − e) / W + c, compared in integers × W.
 * Batched: KEYS are the decisions' keys; ARGV: W, limit, sliding (0|1), peek (0|1), then cost and
 * want per key. Returns 5 numbers per key, in order.
 */
export const WINDOW_SCRIPT = `
${PRELUDE}local W = tonumber(ARGV[1])
local L = tonumber(ARGV[2])
local sliding = ARGV[3] == '1'
local peek = ARGV[4] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
local n = floor(now / W)
local e = now - n * W
local function decide(key, v, c, want)
local cur = 0
local prev = 0
local same = false
if v then
  local a = find(v, ' ', 1, true)
  local b = find(v, ' ', a + 1, true)
  local sn = tonumber(sub(v, 1, a - 1))
  if sn == n then
    same = true
    cur = tonumber(sub(v, a + 1, b - 1))
    prev = tonumber(sub(v, b + 1))
  elseif sn == n - 1 then
    prev = tonumber(sub(v, a + 1, b - 1))
  end
end
if not sliding then prev = 0 end
local weighted = prev * (W - e)
local allowed = weighted + (cur + c) * W <= L * W
local granted = 0
if allowed and not peek then
  granted = c
  if want > c then granted = min(want, floor((L * W - weighted) / W) - cur) end
  cur = cur + granted
  local state = format('%d %d %d', n, cur, prev)
  if same then redis.call('SET', key, state, 'KEEPTTL')
  else redis.call('SET', key, state, 'PX', (sliding and 2 or 1) * W - e + 1) end
  written[key] = state
end
local remaining = floor((L * W - weighted - cur * W) / W)
if remaining < 0 then remaining = 0 end
local toEnd = W - e
local reset = 0
if cur > 0 then
  if sliding then reset = toEnd + W else reset = toEnd end
elseif prev > 0 then reset = toEnd end
local wait = 0
if not allowed then
  if c > L then wait = -1
  elseif not sliding then wait = toEnd
  else
    local over = weighted + (cur + c) * W - L * W
    local within = toEnd
    if prev > 0 then within = ceil(over / prev) end
    if cur + c <= L and within < toEnd then wait = within
    else
      local need = 0
      if cur > 0 then need = W - floor((L - c) * W / cur) end
      if need < 0 then need = 0 end
      wait = toEnd + need
    end
  end
end
emit(allowed, remaining, reset, wait, granted)
end
${RUN}
`;

/** Deletes the key's state. */
export const RESET_SCRIPT = `return redis.call('DEL', KEYS[1])`;
