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
 * tick: one round trip and one script run for many callers). Per key they return three numbers:
 *   r      remaining if allowed, else -1 - remaining (the sign is the decision)
 *   reset  resetMs
 *   x      allowed: granted; denied: retryAfterMs (-1 = never)
 * (an allowed decision has retryAfterMs 0 and a denied one grants nothing, so three carry all five
 * fields: 40 % fewer reply integers than the five-field form for Redis to write and the client to
 * parse — 4–10 % less Redis time per 64-key call, measured with INFO commandstats.)
 * `want` (>= cost) asks for a quota lease: when `cost` is allowed, up to `want` tokens are taken
 * (as many as the key has) and `granted` says how many; otherwise granted = cost (0 for a peek).
 */

/** What both scripts start with: library functions as locals, and the reply being built. */
const PRELUDE = `-- library functions as locals: a global lookup per use costs more than the arithmetic
local floor, ceil, min = math.floor, math.ceil, math.min
local find, sub, byte, format = string.find, string.sub, string.byte, string.format
local pack, unpack_state = struct.pack, struct.unpack
-- Finite: a state holding NaN or an infinity is read as absent.
local function finite(x) return x - x == 0 end
local out = {}
local o = 0
-- States written by this call: a key asked twice in one batch reads its first decision's write,
-- not the MGET taken before it.
local written = {}
local function emit(allowed, remaining, reset, retry, granted)
  if allowed then
    out[o + 1] = remaining
    out[o + 3] = granted
  else
    out[o + 1] = -1 - remaining
    out[o + 3] = retry
  end
  out[o + 2] = reset
  o = o + 3
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
 * GCRA with the key's state (t, d, e): its theoretical arrival time is t (ms) + d units (one unit
 * is 1/scale ms, the time base of the shared-memory kernel), and e is when the key expires (ms,
 * Redis's clock) — the TTL last set on it. Stored as struct.pack('<Bddd', 1, t, d, e), 25 bytes: a
 * marker byte 1, then three little-endian doubles (integers below 2^53, so exact). Packing and
 * unpacking in C took a third less Redis time per 64-key call than the text "t d e" with
 * string.format and find/sub/tonumber (84–98 vs 124 µs, INFO commandstats). Text states (an older
 * hotpath's "t d e" or "t d": they start with a digit, never byte 1) are read as before; anything
 * else unreadable counts as no state. An older hotpath reading a packed state fails (its parser
 * takes a number from the text before the first space: none) and decides by its insurance policy.
 * The batch's MGET and one SET per key (a hash took HMGET, HSET and PEXPIRE: ~20 % more server time).
 *
 * Expiry: a key must outlive its bucket's refill (`full` ms from now). Setting a TTL costs Redis as
 * much again as the SET without one, so a write gives the key its refill plus a margin — the refill
 * again, or at least the smaller of a full bucket's refill (H) and 1 s: PX full + max(full,
 * min(H, 1000)) + 1, e = now + that — and later writes keep it (KEEPTTL) while e still comes after
 * the refill. A busy key's TTL is renewed about once per margin; a key written once lives at most
 * its refill plus the margin (a one-token key of 100/min: 1.6 s, against 0.6 s with a TTL per
 * write). Because e is the key's own deadline, a TTL set under other options
 * (a restart with a new limit or window) is never trusted beyond itself. A value without e (an
 * older hotpath's "t d", whose TTL was its refill) gets a new TTL on its next write; an older
 * hotpath reading a newer state (binary, or "t d e" for the one before) gets a script error and
 * decides by its insurance policy until upgraded.
 * d stays below tau + cost × T however long the key lives (it is relative to the last write).
 * Batched: KEYS are the decisions' keys (one slot on a Cluster); ARGV: T, tau, scale, peek (0|1),
 * then cost and want (once, or per key). Returns 3 numbers per key, in order (see the top).
 */
export const GCRA_SCRIPT = `
${PRELUDE}local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local scale = tonumber(ARGV[3])
local peek = ARGV[4] == '1'
local keep = min(ceil(tau / scale), 1000)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
local function decide(key, v, cost, want)
local d = 0
local e = -1
-- the state's t, d, e; anything unreadable is an absent state (decided as new, then overwritten)
local t0, d0, e0
if v then
  if byte(v, 1) == 1 then
    if #v == 25 then
      t0, d0, e0 = unpack_state('<ddd', v, 2)
      if not (finite(t0) and finite(d0) and finite(e0)) then t0 = nil end
    end
  else
    -- text: an older hotpath's "t d e" or "t d"
    local sp = find(v, ' ', 1, true)
    if sp then
      local sp2 = find(v, ' ', sp + 1, true)
      t0 = tonumber(sub(v, 1, sp - 1))
      if sp2 then
        d0 = tonumber(sub(v, sp + 1, sp2 - 1))
        e0 = tonumber(sub(v, sp2 + 1))
      else
        d0 = tonumber(sub(v, sp + 1))
        e0 = -1
      end
    end
  end
end
if t0 and d0 and e0 then
  d = d0
  e = e0
  local el = now - t0
  if el > 0 then
    if el >= ceil(d / scale) then d = 0 else d = d - el * scale end
  elseif el < 0 then
    -- Redis's clock went back (a failover to a node behind): keep the arrival time where it was.
    d = d - el * scale
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
  if now + full < e then
    state = pack('<Bddd', 1, now, after, e)
    redis.call('SET', key, state, 'KEEPTTL')
  else
    local px = full + (full > keep and full or keep) + 1
    state = pack('<Bddd', 1, now, after, now + px)
    redis.call('SET', key, state, 'PX', px)
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
 * Fixed and sliding windows, aligned to Redis time (window n = floor(now / W)). State (n, c, p, e):
 * window index, its count, the count of window n - 1, and e: when the key expires (ms). Stored as
 * "<n> " (the window index as text, a space), then byte 1 and struct.pack('<ddd', c, p, e): the
 * counts packed as GCRA's state is (above). The index stays text, once per script call, so that an
 * older hotpath's parser ("n c p e": numbers between spaces) never misreads the packed part: on
 * this window's state or the previous one's (sliding) it finds no number where a count should be
 * and fails (then decides by its insurance policy); on a fixed window's previous state it reads the
 * window as past, as it is. A fully packed state could hold 0x20 bytes that such a parser takes for
 * separators and reads as a new key — over-admission. The older text "n c p e" or "n c p" is read
 * as before. A stored window ahead of Redis's clock (it went back) keeps its counts, as GCRA keeps
 * its arrival time.
 * It expires at the end of window n (fixed) or n + 1 (sliding): the first write in window n sets
 * that TTL and later writes keep it (KEEPTTL: a TTL costs Redis as much as the SET itself) — only
 * when the stored e is exactly this window's deadline, so a TTL set under another window length
 * is never kept. A value without e (an older hotpath's "n c p") gets a new TTL on its next write.
 * Sliding estimate: p × (W − e) / W + c, compared in integers × W.
 * Batched: KEYS are the decisions' keys; ARGV: W, limit, sliding (0|1), peek (0|1), then cost and
 * want (once, or per key). Returns 3 numbers per key, in order (see the top).
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
local deadline = (n + (sliding and 2 or 1)) * W + 1
-- Every state this call writes starts with this window's index as text (see above): once per call.
local head = format('%d', n) .. ' \\1'
local function decide(key, v, c, want)
local cur = 0
local prev = 0
local exp = -1
if v then
  -- the state's n, c, p, e; anything unreadable is an absent state (a new key, then overwritten)
  local sn, sc, sp, sx
  local a = find(v, ' ', 1, true)
  if a and byte(v, a + 1) == 1 then
    if #v == a + 25 then
      sn = tonumber(sub(v, 1, a - 1))
      sc, sp, sx = unpack_state('<ddd', v, a + 2)
      if not (sn and finite(sc) and finite(sp) and finite(sx)) then sn = nil end
    end
  else
    -- text: an older hotpath's "n c p e" or "n c p"
    local b = a and find(v, ' ', a + 1, true)
    if b then
      local x = find(v, ' ', b + 1, true)
      sn = tonumber(sub(v, 1, a - 1))
      sc = tonumber(sub(v, a + 1, b - 1))
      sp = tonumber(sub(v, b + 1, (x or 0) - 1))
      if x then sx = tonumber(sub(v, x + 1)) end
      if not (sc and sp) then sn = nil end
    end
  end
  if sn and sx then exp = sx end
  if sn == nil then
    -- absent
  elseif sn >= n then
    -- this window, or one ahead of Redis's clock (it went back: a failover to a node behind):
    -- its counts stand, as GCRA keeps its arrival time
    cur = sc
    prev = sp
  elseif sn == n - 1 then
    prev = sc
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
  local state = head .. pack('<ddd', cur, prev, deadline)
  if exp == deadline then redis.call('SET', key, state, 'KEEPTTL')
  else redis.call('SET', key, state, 'PX', deadline - now) end
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
