// Shoal browser SDK: peer-assisted live HLS for hls.js.
//
//   import { Shoal } from 'shoal-web';
//   const shoal = new Shoal({ api: 'https://api.example.com' });
//   const hls = new Hls(shoal.hlsConfig({ /* your hls.js config */ }));
//   shoal.attach(hls);
//
// See docs/browser-sdk.md.

export { Shoal } from './shoal.js';
export { SDK_VERSION } from './api.js';
export type {
  EngineConfig,
  HlsLike,
  LogLevel,
  SegmentEvent,
  SegmentSource,
  ShoalEvents,
  ShoalOptions,
  ShoalStats,
} from './types.js';
