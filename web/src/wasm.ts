// Loads shoal-engine's wasm once per page, only when P2P is actually going to run (a
// CDN-only session never downloads it).

import init, { ShoalEngine } from '../pkg/shoal_wasm.js';
import type { WasmModule } from './session.js';

let ready: Promise<WasmModule> | null = null;

/** The script URL of a classic `<script>` build, read while it is being evaluated. */
const scriptSrc: string | null =
  typeof document !== 'undefined' && document.currentScript instanceof HTMLScriptElement ? document.currentScript.src : null;

/** `url` wins; else next to this module (ES build) or next to the classic script. */
export function loadWasm(url?: string | URL): Promise<WasmModule> {
  if (!ready) {
    let where: string | URL | undefined = url;
    if (where === undefined && scriptSrc) where = new URL('shoal_wasm_bg.wasm', scriptSrc);
    ready = init(where === undefined ? undefined : { module_or_path: where }).then(() => ({ ShoalEngine }));
    ready.catch(() => {
      ready = null;
    });
  }
  return ready;
}
