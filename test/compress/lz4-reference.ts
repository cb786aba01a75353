/**
 * A plain-TypeScript LZ4 block decoder: the reference the WASM decoder (wasm/lz4.ts) is tested
 * against. Byte by byte, no tricks; the same acceptance rules in the same order, so that for
 * any input both give the same bytes or the same error:
 *   -1 corrupt (a length or offset leaves the input or the window, or the block ends on a match)
 *   -2 the block decodes to more than `cap` bytes
 */
export function referenceDecode(src: Uint8Array, cap: number, window: Uint8Array = new Uint8Array(0)): Uint8Array | -1 | -2 {
  if (src.length === 0) return -1;
  const out: number[] = [];
  let ip = 0;
  const end = src.length;
  const at = (pos: number): number => (pos < 0 ? window[window.length + pos]! : out[pos]!);
  for (;;) {
    const token = src[ip++]!;
    let lit = token >> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (ip >= end) return -1;
        b = src[ip++]!;
        lit += b;
        if (lit > src.length) return -1;
      } while (b === 255);
    }
    if (lit > end - ip) return -1;
    if (lit > cap - out.length) return -2;
    for (let i = 0; i < lit; i++) out.push(src[ip++]!);
    if (ip === end) break;
    if (end - ip < 2) return -1;
    const offset = src[ip]! | (src[ip + 1]! << 8);
    ip += 2;
    if (offset === 0 || offset > out.length + window.length) return -1;
    let len = token & 15;
    if (len === 15) {
      let b: number;
      do {
        if (ip >= end) return -1;
        b = src[ip++]!;
        len += b;
        if (len > cap) return -2;
      } while (b === 255);
    }
    len += 4;
    if (len > cap - out.length) return -2;
    if (ip >= end) return -1;
    const from = out.length - offset;
    for (let i = 0; i < len; i++) out.push(at(from + i));
  }
  return Uint8Array.from(out);
}

/**
 * A plain-TypeScript LZ4 block encoder without any match search: every byte a literal. Valid
 * input for any decoder; the tests use it to build blocks with chosen literal runs.
 */
export function literalBlock(data: Uint8Array): Uint8Array {
  const out: number[] = [];
  const n = data.length;
  if (n >= 15) {
    out.push(0xf0);
    let rest = n - 15;
    while (rest >= 255) {
      out.push(255);
      rest -= 255;
    }
    out.push(rest);
  } else {
    out.push(n << 4);
  }
  for (const b of data) out.push(b);
  return Uint8Array.from(out);
}
