/**
 * The file piscina loads in each worker thread: a CommonJS shim that starts the real worker
 * (worker.ts, an ES module) with import().
 *
 * Why: piscina loads its worker with require() first, and on Node 20.19+ require() of an ES module
 * that is interrupted — the thread terminated while the module graph instantiates (an engine
 * closed while a replacement worker starts) — trips a fatal assertion in Node
 * (ModuleWrap::CreateRequiredModuleFacade, "facade->InstantiateModule(...).IsJust()"), which
 * aborts the whole process. CI caught its native stack once: it was the "vitest fork exited
 * unexpectedly" seen about once in 10–30 runs. import() has no such path: a terminated load just
 * ends with the thread.
 */
module.exports = import('./worker.js').then((m: { default: unknown }) => m.default);
