/**
 * Where the built files are. Worker threads must run built JavaScript (DESIGN pitfall 5), and
 * the kernels are a built .wasm; both live under dist/. When this module itself runs from
 * dist/engine/runtime/ the package root's dist/ is two levels up; when it runs from the
 * TypeScript source (vitest), engine/runtime/ → ../../dist/.
 */
const here = import.meta.url;
const fromSource = here.endsWith('.ts');

/** URL of a file in the build folder, e.g. `distUrl('wasm/hotpath.wasm')`. */
export function distUrl(relative: string): URL {
  return new URL((fromSource ? '../../dist/' : '../../') + relative, here);
}
