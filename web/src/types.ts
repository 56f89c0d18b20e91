// Public types of the browser SDK.

/**
 * Engine settings, the same fields as `shoal_engine::Config` (snake_case, see
 * `crates/engine/src/config.rs`). Applied on top of the API's `engine` overrides; unknown
 * fields are refused by the engine (P2P then stays off and the player plays from the CDN).
 */
export interface EngineConfig {
  p2p_enabled?: boolean;
  consume_only?: boolean;
  upload_kbps?: number;
  max_upload_kbps?: number;
  upload_budget_bytes?: number;
  max_uploads?: number;
  max_parked_uploads?: number;
  park_timeout_ms?: number;
  send_window_bytes?: number;
  fetchers_target?: number;
  fetchers_max?: number;
  secondary_wait_ms?: number;
  uphill_wait_ms?: number;
  cdn_margin_ms?: number;
  peer_stall_ms?: number;
  cdn_ttfb_ms?: number;
  cdn_kbps?: number;
  cache_segments?: number;
  min_peers?: number;
  ping_interval_ms?: number;
  peer_timeout_ms?: number;
  manifest_name?: string;
}

export interface ShoalOptions {
  /**
   * API base URL (`https://api.example.com`); the SDK joins at `{api}/v1/join`. Several URLs
   * (API nodes of a cluster) are tried in order. Without it (or when no API can be reached)
   * the player plays from the CDN only.
   */
  api?: string | string[];
  /** Viewer token for the join request, if the API requires one. */
  token?: string;
  /**
   * Stream name as the origin publishes it. Default: the directory holding the master
   * playlist (`.../live/demo/master.m3u8` → `demo`).
   */
  stream?: string;
  /** Engine settings on top of the API's (same schema as the engine's config). */
  engine?: EngineConfig;
  /** STUN URLs (`stun:host:port`) used instead of the API's. */
  stun?: string[];
  /** Most peer connections at once (open or being set up). Default 12, at most 48. */
  maxPeers?: number;
  /** A peer connection whose DataChannel has not opened after this long is dropped. Default 15 000. */
  connectTimeoutMs?: number;
  /** The join request's timeout. Default 5 000. */
  joinTimeoutMs?: number;
  /**
   * Where `shoal_wasm_bg.wasm` is. Default: next to the SDK's module file (the ES module
   * build); the IIFE build needs it set.
   */
  wasmUrl?: string | URL;
  /** Log lines (`debug` included). Default: warnings and errors to the console. */
  log?: (level: LogLevel, msg: string) => void;
  /** Interval of the `stats` event in ms (0 = never). Default 1 000. */
  statsIntervalMs?: number;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Where a delivered segment's bytes came from. */
export type SegmentSource = 'cdn' | 'peers' | 'mixed';

/** What the SDK has done so far; every byte count is media payload unless named otherwise. */
export interface ShoalStats {
  /** P2P is running for this session (joined, origin key known, engine loaded). */
  p2p: boolean;
  /** Why P2P is off (`no_api`, `api_unreachable`, the API's `p2p_reason`, `wasm`, ...). */
  p2pReason: string | null;
  peerId: string | null;
  /** Peers with an open DataChannel now. */
  peers: number;
  /** Members of this client's swarm as the tracker last said (itself included). */
  swarmSize: number;
  /** Segment bytes from the CDN (through the engine, and direct loads when P2P was off or failed). */
  httpBytes: number;
  /** Segment bytes received from peers and accepted after verification. */
  p2pBytes: number;
  /** Segment bytes sent to peers. */
  uploadBytes: number;
  /** Signed-manifest bytes fetched from the CDN (the cost of verification). */
  manifestBytes: number;
  /** p2pBytes / (httpBytes + p2pBytes). */
  share: number;
  /** Segments handed to the player, and how many of those came wholly or partly from peers. */
  segments: number;
  segmentsFromPeers: number;
  /** Segments whose every byte matched the origin-signed hashes. */
  segmentsVerified: number;
  /** Chunks (from peers) or segments (from the CDN) that failed verification. */
  verifyFailures: number;
  /** Peers dropped for bad data or protocol errors. */
  peersBanned: number;
  /** Segments the SDK loaded directly from the CDN because P2P was off or the engine failed. */
  directLoads: number;
  /** Direct loads caused by an engine failure or timeout (a subset of directLoads). */
  fallbacks: number;
  /** Bytes thrown away (duplicates, data after a cancel, failed verification). */
  wastedBytes: number;
  /** The engine's own counters (`shoal_engine::Stats`), when P2P runs. */
  engine: Record<string, number | null> | null;
}

export interface SegmentEvent {
  rendition: string;
  seq: number;
  bytes: number;
  source: SegmentSource;
  verified: boolean;
  /** Loaded by hls.js's own loader (P2P not running yet or off, or a fallback). */
  direct: boolean;
}

export interface ShoalEvents {
  /** Every `statsIntervalMs`. */
  stats: ShoalStats;
  /** P2P started (joined and engine loaded) or was turned off; see `stats.p2pReason`. */
  p2p: { enabled: boolean; reason: string | null; peerId: string | null };
  peerConnected: { peerId: string; peers: number };
  peerDisconnected: { peerId: string; peers: number };
  /** A segment was handed to the player. */
  segment: SegmentEvent;
  /** Something failed verification or a peer misbehaved (the player is not affected). */
  verification: { reason: string };
}

/** The few parts of an `Hls` instance the SDK uses (no import of hls.js needed). */
export interface HlsLike {
  on(event: string, listener: (event: string, data: any) => void): void;
  off?(event: string, listener: (event: string, data: any) => void): void;
  media: HTMLMediaElement | null;
}
