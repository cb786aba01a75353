// The hotpath kernels. Re-exports only: each kernel lives in a file of its own.
// Built with --runtime stub and imported shared memory; no kernel allocates (DESIGN pitfall 1).
export { xxh32, xxh64 } from './hash';
export { gcraTake, gcraReset } from './gcra';
export { windowTake, windowReset } from './window';
export { leaseSpend, leaseGrant } from './lease';
export { counterBump32, counterInc, counterAddF, counterStoreF, counterReadF } from './counter';

/** A no-op export: the benchmark's measure of the bare JS→WASM call. */
export function noop(x: i32): i32 {
  return x;
}
