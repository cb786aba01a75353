// The hotpath kernels. Re-exports only: each kernel lives in a file of its own.
// Built with --runtime stub and imported shared memory; no kernel allocates (DESIGN pitfall 1).
export { xxh32, xxh64, xxh32Reset, xxh32Update, xxh32Digest, xxh64Reset, xxh64Update, xxh64Digest } from './hash';
export { lz4Compress, lz4Decompress, lz4Bound } from './lz4';
export { gcraTake, gcraReset } from './gcra';
export { windowTake, windowReset } from './window';
export { leaseSpend, leaseGrant, leaseReset } from './lease';
export { counterBump32, counterInc, counterAddF, counterStoreF, counterReadF } from './counter';
export { bloomAdd, bloomHas, bloomHas2, bloomZero, bloomCount, bloomDistrust, bloomTrustedFrom } from './bloom';
export { sketchInit, sketchReset, sketchIncrement, sketchIncrementBatch, sketchFrequency, sketchCompare, sketchAdditions } from './sketch';
export { heapInit, heapSetCapacity, heapSize, heapSetSize, heapPush, heapPop, heapPeekSlot, heapPeekKey, heapPushBatch, heapPopBatch, heapSort, heapDropFront, heapRenumber } from './heap';
export { ringFind, ringFindBinary, ringIndexBuild, ringSort, jumpBucket, jumpGet, maglevBuild } from './ring';

/** A no-op export: the benchmark's measure of the bare JS→WASM call. */
export function noop(x: i32): i32 {
  return x;
}
