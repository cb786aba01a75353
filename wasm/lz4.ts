// LZ4 block compression and decompression (the block format of lz4's doc/lz4_Block_format.md).
//
// A block is a series of sequences:
//   token      u8      high 4 bits: literal length (15 = more bytes follow), low 4: match length - 4
//   [lit len]  u8*     255, 255, …, n (added to 15) when the high nibble is 15
//   literals   bytes
//   offset     u16 LE  distance back into the output, 1..65535          } absent in the last
//   [match len] u8*    as for literals, added to 15 + 4                  } sequence
// The last sequence holds only literals; the last 5 bytes of a block are always literals and the
// last match starts at least 12 bytes before the end (MFLIMIT), so decoders may copy in 8-byte
// steps.
//
// lz4Compress is the reference implementation's fast compressor (LZ4_compress_generic with a
// 4096-entry u32 hash table over 5-byte sequences, "byU32", and the same skip heuristic driven
// by `acceleration`), so on the same block it finds the same matches as `lz4 -1`.
//
// Memory: the caller (engine/compress/workspace.ts) owns every byte these functions touch — a
// thread-private memory, never the engine's shared arena. `table` is 4096 u32 (16 KiB), zeroed
// here at the start of each block (blocks are independent). Output buffers must be followed by
// WILD = 32 writable slack bytes: the decoder copies literals and matches in 8-byte steps and may
// write up to 31 bytes past the true end (never past `dst + dstCap + WILD`). Input buffers must
// be followed by WILD readable bytes for the same reason (their content does not matter).
//
// The decoder is hardened: every length is checked against both the remaining input and the
// remaining output before anything is copied, every offset against the start of the window, and
// every loop consumes input, so corrupt or hostile input ends in a negative result — never an
// out-of-range access, a hang or a wrong length. No function allocates or reads a clock.

const MINMATCH: u32 = 4;
const MFLIMIT: usize = 12;
const LASTLITERALS: usize = 5;
const MIN_LENGTH: u32 = 13; // MFLIMIT + 1: shorter inputs are emitted as literals only
const MAX_DISTANCE: usize = 65535;
const HASH_LOG: u64 = 12;
const SKIP_TRIGGER: u32 = 6;
const PRIME5: u64 = 889523592379;

/** Slack the caller reserves after every buffer (see the header comment). */
export const WILD: u32 = 32;

/** Decoder results below zero. */
const E_CORRUPT: i32 = -1; // malformed: a length or offset leaves the input or the window
const E_OUTPUT: i32 = -2; // the block decodes to more than dstCap bytes

/** The worst-case compressed size of `n` input bytes (LZ4_compressBound). */
export function lz4Bound(n: u32): u32 {
  return n + n / 255 + 16;
}

@inline function hash5(p: usize): usize {
  return <usize>(((load<u64>(p) << 24) * PRIME5) >> (64 - HASH_LOG));
}

/** Length of the common prefix of `a` and `b`, compared up to (not including) `limit` for `a`. */
@inline function commonLength(a: usize, b: usize, limit: usize): usize {
  const start = a;
  while (a + 8 <= limit) {
    const diff = load<u64>(a) ^ load<u64>(b);
    if (diff != 0) return a + <usize>(ctz<u64>(diff) >> 3) - start;
    a += 8;
    b += 8;
  }
  while (a < limit && load<u8>(a) == load<u8>(b)) {
    a++;
    b++;
  }
  return a - start;
}

/**
 * Copies `len` bytes in 16-byte steps: may write up to 15 bytes past dst + len (into the caller's
 * slack) and read as far past src + len. Only for non-overlapping ranges, or for dst ≥ src + 16.
 */
@inline function wildCopy16(dst: usize, src: usize, len: usize): void {
  const end = dst + len;
  do {
    v128.store(dst, v128.load(src));
    dst += 16;
    src += 16;
  } while (dst < end);
}

@inline function writeLength(op: usize, len: usize): usize {
  while (len >= 255) {
    store<u8>(op, 255);
    op++;
    len -= 255;
  }
  store<u8>(op, <u8>len);
  return op + 1;
}

/**
 * Compresses `srcLen` bytes at `src` into `dst` (room for lz4Bound(srcLen) bytes) as one
 * independent block. `acceleration` ≥ 1 (1 = the lz4 tool's default; higher is faster and
 * compresses less). Returns the block's length.
 */
export function lz4Compress(src: usize, srcLen: u32, dst: usize, table: usize, acceleration: u32): u32 {
  memory.fill(table, 0, 4 << <usize>HASH_LOG);
  const iend = src + <usize>srcLen;
  let op = dst;
  let anchor = src;
  if (srcLen >= MIN_LENGTH) {
    const mflimitPlusOne = iend - MFLIMIT + 1;
    const matchLimit = iend - LASTLITERALS;
    let ip = src;
    store<u32>(table + (hash5(ip) << 2), 0);
    ip++;
    let forwardH = hash5(ip);
    let done = false;
    while (!done) {
      // Find a match: probe forward, the step growing with every failure (acceleration).
      let forwardIp = ip;
      let step: u32 = 1;
      let searchMatchNb: u32 = acceleration << SKIP_TRIGGER;
      let match: usize = 0;
      let found = false;
      while (true) {
        const h = forwardH;
        ip = forwardIp;
        forwardIp += <usize>step;
        step = searchMatchNb++ >> SKIP_TRIGGER;
        if (forwardIp > mflimitPlusOne) break;
        match = src + <usize>load<u32>(table + (h << 2));
        forwardH = hash5(forwardIp);
        store<u32>(table + (h << 2), <u32>(ip - src));
        if (match + MAX_DISTANCE >= ip && load<u32>(match) == load<u32>(ip)) {
          found = true;
          break;
        }
      }
      if (!found) break;

      // Extend backwards over equal bytes.
      while (ip > anchor && match > src && load<u8>(ip - 1) == load<u8>(match - 1)) {
        ip--;
        match--;
      }

      // Literal run.
      const litLength = ip - anchor;
      let token = op++;
      if (litLength >= 15) {
        store<u8>(token, 15 << 4);
        op = writeLength(op, litLength - 15);
      } else {
        store<u8>(token, <u8>(litLength << 4));
      }
      if (litLength <= 64) wildCopy16(op, anchor, litLength);
      else memory.copy(op, anchor, litLength);
      op += litLength;

      while (true) {
        // Offset and match length.
        store<u16>(op, <u16>(ip - match));
        op += 2;
        const matchCode = commonLength(ip + MINMATCH, match + MINMATCH, matchLimit);
        ip += <usize>MINMATCH + matchCode;
        if (matchCode >= 15) {
          store<u8>(token, load<u8>(token) + 15);
          op = writeLength(op, matchCode - 15);
        } else {
          store<u8>(token, load<u8>(token) + <u8>matchCode);
        }
        anchor = ip;
        if (ip >= mflimitPlusOne) {
          done = true;
          break;
        }

        store<u32>(table + (hash5(ip - 2) << 2), <u32>(ip - 2 - src));
        // An immediate next match (no literals between)?
        const h = hash5(ip);
        match = src + <usize>load<u32>(table + (h << 2));
        store<u32>(table + (h << 2), <u32>(ip - src));
        if (match + MAX_DISTANCE >= ip && load<u32>(match) == load<u32>(ip)) {
          token = op++;
          store<u8>(token, 0);
          continue;
        }
        ip++;
        forwardH = hash5(ip);
        break;
      }
    }
  }
  // The last literals.
  const lastRun = iend - anchor;
  if (lastRun >= 15) {
    store<u8>(op++, 15 << 4);
    op = writeLength(op, lastRun - 15);
  } else {
    store<u8>(op++, <u8>(lastRun << 4));
  }
  memory.copy(op, anchor, lastRun);
  op += lastRun;
  return <u32>(op - dst);
}

/**
 * Decodes the block of `srcLen` bytes at `src` into `dst`, writing at most `dstCap` bytes.
 * Matches may reach back to `windowStart` (≤ dst): the previous output when blocks are linked,
 * `dst` itself for an independent block. Returns the decoded length, or -1 (corrupt block) or -2
 * (it decodes to more than dstCap bytes).
 */
export function lz4Decompress(src: usize, srcLen: u32, dst: usize, dstCap: u32, windowStart: usize): i32 {
  if (srcLen == 0) return E_CORRUPT;
  const iend = src + <usize>srcLen;
  const oend = dst + <usize>dstCap;
  let ip = src;
  let op = dst;
  while (true) {
    const token = <usize>load<u8>(ip++);
    // Literals.
    let lit = token >> 4;
    if (lit == 15) {
      let b: usize;
      do {
        if (ip >= iend) return E_CORRUPT;
        b = <usize>load<u8>(ip++);
        lit += b;
        if (lit > <usize>srcLen) return E_CORRUPT; // more literals than the block holds
      } while (b == 255);
    }
    if (lit > iend - ip) return E_CORRUPT;
    if (lit > oend - op) return E_OUTPUT;
    if (lit <= 64) wildCopy16(op, ip, lit);
    else memory.copy(op, ip, lit);
    ip += lit;
    op += lit;
    if (ip == iend) break; // the last sequence: literals only

    // Match.
    if (iend - ip < 2) return E_CORRUPT;
    const offset = <usize>load<u16>(ip);
    ip += 2;
    if (offset == 0 || offset > op - windowStart) return E_CORRUPT;
    let len = token & 15;
    if (len == 15) {
      let b: usize;
      do {
        if (ip >= iend) return E_CORRUPT;
        b = <usize>load<u8>(ip++);
        len += b;
        if (len > <usize>dstCap) return E_OUTPUT;
      } while (b == 255);
    }
    len += <usize>MINMATCH;
    if (len > oend - op) return E_OUTPUT;
    if (ip >= iend) return E_CORRUPT; // a block ends with literals, never with a match
    let m = op - offset;
    const end = op + len;
    if (offset >= 16) {
      // Chunks never overlap their source: copy 16 bytes at a time (may overshoot into the slack).
      wildCopy16(op, m, len);
    } else if (offset >= 8) {
      do {
        store<u64>(op, load<u64>(m));
        op += 8;
        m += 8;
      } while (op < end);
    } else {
      // Overlapping: the match repeats a pattern shorter than 8 bytes.
      do {
        store<u8>(op, load<u8>(m));
        op++;
        m++;
      } while (op < end);
    }
    op = end;
  }
  return <i32>(op - dst);
}
