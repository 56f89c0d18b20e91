// HLS playlist reading for the engine: which renditions a master playlist names, and which
// segments (sequence number, absolute URL, duration) a media playlist lists. Only what the
// engine needs; hls.js still parses every playlist itself.

/** Largest playlist text read (bigger ones are not fed to the engine). */
export const MAX_PLAYLIST_CHARS = 512 * 1024;
/** Most segments fed to the engine from one media playlist (the newest are kept). */
export const MAX_SEGMENTS = 1000;
/** Most variants read from one master playlist. */
export const MAX_VARIANTS = 32;

export interface Variant {
  /** Rendition name shared by every Shoal client (see {@link renditionName}). */
  name: string;
  url: string;
  bandwidth: number;
}

export interface ListedSegment {
  seq: number;
  url: string;
  durationMs: number;
}

export interface MediaPlaylist {
  segments: ListedSegment[];
  /** False when segments use byte ranges: such playlists are played from the CDN only. */
  shareable: boolean;
  targetDurationMs: number;
  ended: boolean;
}

const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** The peer protocol's name rule: 1-64 of `[A-Za-z0-9_.-]`, not starting with `.`. */
export function validName(s: string): boolean {
  return NAME_RE.test(s) && !s.startsWith('.');
}

export function resolveUrl(base: string, uri: string): string {
  try {
    return new URL(uri, base).href;
  } catch {
    return uri;
  }
}

/**
 * The rendition name of a variant URI, the same rule as the native SDK
 * (`crates/peer/src/playlist.rs`): its directory (`720p/index.m3u8` → `720p`) or its file
 * stem (`low.m3u8` → `low`) if that is a valid name not taken yet, else `v{i}`. The origin
 * signs segment entries with this name, so every client must derive the same one.
 */
export function renditionName(uri: string, i: number, taken: readonly string[]): string {
  const path = uri.split(/[?#]/)[0] ?? uri;
  const parts = path.split('/').filter((s) => s !== '');
  let cand = '';
  if (parts.length >= 2) {
    const dir = parts[parts.length - 2] as string;
    const file = parts[parts.length - 1] as string;
    if (file.endsWith('.m3u8') && dir !== '.' && dir !== '..') cand = dir;
    else cand = file.replace(/(\.m3u8)+$/, '');
  } else if (parts.length === 1) {
    cand = (parts[0] as string).replace(/(\.m3u8)+$/, '');
  }
  if (validName(cand) && !taken.includes(cand) && cand !== 'master.m3u8') return cand;
  return `v${i}`;
}

function lines(text: string): string[] {
  return text.split(/\r?\n/).map((l) => l.trim());
}

function attr(line: string, name: string): string | null {
  const re = new RegExp(`(?:^|[:,])${name}=("[^"]*"|[^,]*)`);
  const m = re.exec(line);
  if (!m || m[1] === undefined) return null;
  return m[1].replace(/^"|"$/g, '');
}

/** True for a master playlist (it has variant streams). */
export function isMaster(text: string): boolean {
  return text.includes('#EXT-X-STREAM-INF');
}

/**
 * Variants of a master playlist fetched from `url`, I-frame playlists left out. A media
 * playlist given here yields one rendition named `main` (as the native SDK names it).
 */
export function parseMaster(text: string, url: string): Variant[] {
  if (text.length > MAX_PLAYLIST_CHARS || !text.startsWith('#EXTM3U')) return [];
  if (!isMaster(text)) return [{ name: 'main', url, bandwidth: 0 }];
  const out: Variant[] = [];
  let pending: number | null = null;
  for (const l of lines(text)) {
    if (out.length >= MAX_VARIANTS) break;
    if (l.startsWith('#EXT-X-STREAM-INF:')) {
      const bw = Number(attr(l, 'BANDWIDTH') ?? '0');
      pending = Number.isFinite(bw) && bw > 0 ? Math.min(bw, 0xffffffff) : 0;
    } else if (l !== '' && !l.startsWith('#') && pending !== null) {
      const name = renditionName(l, out.length, out.map((v) => v.name));
      out.push({ name, url: resolveUrl(url, l), bandwidth: pending });
      pending = null;
    }
  }
  return out;
}

/** Segments of a media playlist fetched from `url`; null if it is not one. */
export function parseMedia(text: string, url: string): MediaPlaylist | null {
  if (text.length > MAX_PLAYLIST_CHARS || !text.startsWith('#EXTM3U') || isMaster(text)) return null;
  let seq = 0;
  let targetDurationMs = 0;
  let ended = false;
  let shareable = true;
  let duration: number | null = null;
  let segments: ListedSegment[] = [];
  for (const l of lines(text)) {
    if (l.startsWith('#EXT-X-MEDIA-SEQUENCE:')) {
      const n = Number(l.slice(22));
      if (Number.isSafeInteger(n) && n >= 0) seq = n;
    } else if (l.startsWith('#EXT-X-TARGETDURATION:')) {
      const n = Number(l.slice(22));
      if (Number.isFinite(n) && n > 0) targetDurationMs = Math.round(n * 1000);
    } else if (l.startsWith('#EXTINF:')) {
      const n = Number.parseFloat(l.slice(8));
      duration = Number.isFinite(n) && n >= 0 ? n : 0;
    } else if (l.startsWith('#EXT-X-BYTERANGE')) {
      shareable = false;
    } else if (l === '#EXT-X-ENDLIST') {
      ended = true;
    } else if (l !== '' && !l.startsWith('#')) {
      if (duration !== null) {
        segments.push({ seq, url: resolveUrl(url, l), durationMs: Math.round(duration * 1000) });
        if (segments.length > 2 * MAX_SEGMENTS) segments = segments.slice(-MAX_SEGMENTS);
      }
      seq += 1;
      duration = null;
    }
  }
  if (segments.length > MAX_SEGMENTS) segments = segments.slice(-MAX_SEGMENTS);
  return { segments, shareable, targetDurationMs, ended };
}

/**
 * The stream name from a master playlist URL: the nearest valid directory name
 * (`.../live/demo/master.m3u8` → `demo`), as the native SDK derives it.
 */
export function streamFromUrl(url: string): string | null {
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    return null;
  }
  const segs = path.split('/');
  segs.pop();
  for (let i = segs.length - 1; i >= 0; i--) {
    const s = segs[i] as string;
    if (validName(s)) return s;
  }
  return null;
}
