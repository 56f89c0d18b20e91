// CDN failover for the browser SDK (the same rule as crates/peer/src/cdn.rs): the bases are the
// master playlist's directory, then the API's `cdn` list; a request that meets a network error,
// a 5xx or no response in RESPONSE_TIMEOUT_MS goes to the same path under the next base (a
// standby origin or another CDN), and the base that answered is tried first afterwards.

/** A base whose response (status and headers) takes longer than this is too slow to play from. */
export const RESPONSE_TIMEOUT_MS = 3_000;
/** Most bases kept. */
const MAX_BASES = 8;

function dirOf(url: string): string | null {
  try {
    const u = new URL(url);
    u.search = '';
    u.hash = '';
    const s = u.toString();
    return s.slice(0, s.lastIndexOf('/') + 1);
  } catch {
    return null;
  }
}

export class CdnBases {
  private bases: string[] = [];
  private preferred = 0;

  /** The directory of the master playlist the page gave hls.js (kept first). */
  setPrimary(masterUrl: string): void {
    const d = dirOf(masterUrl);
    if (!d || this.bases.includes(d)) return;
    this.bases.unshift(d);
    this.bases = this.bases.slice(0, MAX_BASES);
  }

  /** The API's bases, after the primary (duplicates and non-URLs ignored). */
  add(more: readonly string[]): void {
    for (const m of more) {
      if (typeof m !== 'string' || this.bases.length >= MAX_BASES) continue;
      const b = m.endsWith('/') ? m : `${m}/`;
      try {
        new URL(b);
      } catch {
        continue;
      }
      if (!this.bases.includes(b)) this.bases.push(b);
    }
  }

  get size(): number {
    return this.bases.length;
  }

  /** The URLs to try for `url`, preferred base first: the same path under every base it lives
   * under; just `url` when it is under none. */
  candidates(url: string): string[] {
    const n = this.bases.length;
    const rel = this.bases.map((b) => (url.startsWith(b) ? url.slice(b.length) : null)).find((r) => r !== null);
    if (rel === undefined || rel === null || n === 0) return [url];
    const out: string[] = [];
    for (let k = 0; k < n; k++) out.push(`${this.bases[(this.preferred + k) % n]}${rel}`);
    return out;
  }

  /** `url` answered: its base is tried first from now on. */
  worked(url: string): void {
    const i = this.bases.findIndex((b) => url.startsWith(b));
    if (i >= 0) this.preferred = i;
  }
}

/** Whether a failed request should move to the next base: no answer, or a server error (4xx is
 * the same everywhere). */
export function worthFailover(status: number): boolean {
  return status === 0 || status >= 500;
}

/** fetch() across the bases: the first answer that is not a server error, each base given
 * RESPONSE_TIMEOUT_MS for its headers (the last one the caller's whole budget). */
export async function fetchWithFailover(
  cdn: CdnBases,
  url: string,
  init: RequestInit,
  signal: AbortSignal,
  doFetch: typeof fetch = fetch,
): Promise<Response> {
  const tries = cdn.candidates(url);
  let last: unknown = new Error('no URL');
  for (let i = 0; i < tries.length; i++) {
    const u = tries[i] as string;
    const ctl = new AbortController();
    const onAbort = () => ctl.abort();
    signal.addEventListener('abort', onAbort);
    const isLast = i === tries.length - 1;
    const timer = isLast ? null : setTimeout(() => ctl.abort(), RESPONSE_TIMEOUT_MS);
    try {
      const res = await doFetch(u, { ...init, signal: ctl.signal });
      if (!isLast && worthFailover(res.status)) {
        last = new Error(`${u}: HTTP ${res.status}`);
        void res.body?.cancel().catch(() => undefined);
        continue;
      }
      cdn.worked(u);
      return res;
    } catch (e) {
      if (signal.aborted) throw e;
      last = e;
    } finally {
      if (timer !== null) clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
  }
  throw last;
}
