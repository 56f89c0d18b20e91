// `POST /v1/join` (docs/api.md): the SDK's first call. Any failure means "play from the CDN".

export interface JoinResponse {
  version: number;
  session_id: string;
  peer_id: string;
  stream: string;
  trackers: string[];
  stun: string[];
  /** `alternates`: other pingback nodes of a cluster, in the order to try when `url` fails. */
  pingback: { url: string; interval_ms: number; alternates?: string[] };
  cdn: string[];
  origin_public_key: string;
  key_id: string;
  p2p: boolean;
  p2p_reason?: string;
  ticket: string;
  ticket_expires_ms: number;
  engine: Record<string, unknown>;
  api: string[];
  server_time_ms: number;
}

export const SDK_NAME = 'shoal-web';
export const SDK_VERSION = '0.1.0';
/** Largest join response read. */
const MAX_RESPONSE_CHARS = 64 * 1024;

export class JoinError extends Error {
  constructor(
    message: string,
    /** Worth trying again later (network, 5xx, 429); false for refusals (4xx). */
    readonly retry: boolean,
  ) {
    super(message);
  }
}

function joinUrl(api: string): string {
  return `${api.replace(/\/+$/, '')}/v1/join`;
}

function isStringList(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((s) => typeof s === 'string');
}

/** Checks the fields the SDK relies on; a response missing them is treated as unreachable. */
export function checkJoinResponse(v: unknown): JoinResponse {
  const o = v as Record<string, unknown> | null;
  if (o === null || typeof o !== 'object') throw new JoinError('join response is not an object', true);
  const bad = (f: string): never => {
    throw new JoinError(`join response: field ${f} missing or of the wrong type`, true);
  };
  if (typeof o.peer_id !== 'string' || o.peer_id === '') bad('peer_id');
  if (typeof o.stream !== 'string') bad('stream');
  if (!isStringList(o.trackers)) bad('trackers');
  if (!isStringList(o.stun)) bad('stun');
  if (typeof o.p2p !== 'boolean') bad('p2p');
  if (typeof o.origin_public_key !== 'string') bad('origin_public_key');
  if (typeof o.ticket !== 'string') bad('ticket');
  if (o.engine !== undefined && (o.engine === null || typeof o.engine !== 'object' || Array.isArray(o.engine))) {
    bad('engine');
  }
  if (o.api !== undefined && !isStringList(o.api)) bad('api');
  return {
    ...(o as unknown as JoinResponse),
    engine: (o.engine as Record<string, unknown> | undefined) ?? {},
    api: (o.api as string[] | undefined) ?? [],
    cdn: isStringList(o.cdn) ? o.cdn : [],
  };
}

/** One join attempt against each API URL in order until one answers. */
export async function join(apis: string[], stream: string, token: string | undefined, timeoutMs: number): Promise<JoinResponse> {
  const body = JSON.stringify({
    stream,
    ...(token ? { token } : {}),
    client: { platform: 'web', sdk: SDK_NAME, sdk_version: SDK_VERSION },
  });
  let last: JoinError = new JoinError('no API URL', false);
  for (const api of apis) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs);
    try {
      const res = await fetch(joinUrl(api), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        signal: ctl.signal,
        credentials: 'omit',
      });
      const text = await res.text();
      if (text.length > MAX_RESPONSE_CHARS) throw new JoinError('join response too large', true);
      if (!res.ok) {
        let code = '';
        try {
          code = String((JSON.parse(text) as { error?: unknown }).error ?? '');
        } catch {
          // not JSON: the status says enough
        }
        const retry = res.status >= 500 || res.status === 429;
        throw new JoinError(`join refused: HTTP ${res.status}${code ? ` ${code}` : ''}`, retry);
      }
      return checkJoinResponse(JSON.parse(text));
    } catch (e) {
      if (e instanceof JoinError) {
        last = e;
        if (!e.retry) throw e;
      } else {
        const why = ctl.signal.aborted ? `timed out after ${timeoutMs} ms` : String((e as Error)?.message ?? e);
        last = new JoinError(`join at ${api} failed: ${why}`, true);
      }
    } finally {
      clearTimeout(timer);
    }
  }
  throw last;
}
