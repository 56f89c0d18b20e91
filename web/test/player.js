// The test player: hls.js on a muted autoplaying <video>, plus the measurements play.mjs reads.
//
// Inputs: window.__shoalTestConfig (set by play.mjs before any script runs) and, optionally,
// window.__shoalTestHooks set by an injected init script:
//   hlsConfig(config) -> config   change the hls.js config (e.g. install a P2P loader)
//   onHls(hls, video)             called after the Hls instance exists, before loadSource
//   report() -> JSON value        merged into this viewer's result as `extra`
// Times are ms since the run started (one clock for every page) unless named otherwise.
(() => {
  'use strict';
  const cfg = window.__shoalTestConfig || {};
  const hooks = window.__shoalTestHooks || {};
  const runStart = cfg.runStartEpochMs || Date.now();
  const now = () => Date.now() - runStart;
  const MAX_ERRORS = 500;
  const video = document.getElementById('video');

  const st = {
    startupMs: null, // navigation start -> first 'playing'
    firstPlayingAtMs: null,
    stalls: [], // 'waiting' after startup while not seeking: {atMs, durationMs, currentTime}
    bufferStalledErrors: [], // hls.js BUFFER_STALLED_ERROR after startup: atMs
    hlsErrors: [], // every hls.js ERROR event: {atMs, type, details, fatal}
    errors: [], // fatal hls.js errors, media element errors, exceptions
    samples: [],
    fragCount: 0,
    fragBytes: 0,
    levels: null,
  };
  let openStall = null;

  function pushBounded(list, item) {
    if (list.length < MAX_ERRORS) list.push(item);
  }

  function sample() {
    const b = video.buffered;
    let bufferedAhead = 0;
    for (let i = 0; i < b.length; i++) {
      if (b.start(i) <= video.currentTime + 0.1 && b.end(i) > video.currentTime) {
        bufferedAhead = b.end(i) - video.currentTime;
      }
    }
    const hls = window.__shoalTest.hls;
    const finite = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : null);
    let pdtLatency = null;
    if (hls && hls.playingDate instanceof Date) pdtLatency = (Date.now() - hls.playingDate.getTime()) / 1000;
    const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    st.samples.push({
      atMs: now(),
      currentTime: video.currentTime,
      bufferedAhead,
      latency: hls ? finite(hls.latency) : null,
      targetLatency: hls ? finite(hls.targetLatency) : null,
      pdtLatency,
      paused: video.paused,
      readyState: video.readyState,
      playbackRate: video.playbackRate,
      decodedFrames: q ? q.totalVideoFrames : null,
      droppedFrames: q ? q.droppedVideoFrames : null,
    });
  }

  // A coarse look at the frame on screen: a black or frozen-blank video has one colour.
  function frameStats() {
    if (video.readyState < 2 || !video.videoWidth) return null;
    const w = 64;
    const h = 36;
    const c = document.createElement('canvas');
    c.width = w;
    c.height = h;
    const ctx = c.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(video, 0, 0, w, h);
    const px = ctx.getImageData(0, 0, w, h).data;
    const colours = new Set();
    let luma = 0;
    for (let i = 0; i < px.length; i += 4) {
      colours.add(((px[i] >> 5) << 6) | ((px[i + 1] >> 5) << 3) | (px[i + 2] >> 5));
      luma += 0.2126 * px[i] + 0.7152 * px[i + 1] + 0.0722 * px[i + 2];
    }
    return { meanLuma: luma / (w * h), distinctColours: colours.size };
  }

  function snapshot() {
    sample();
    let extra = null;
    if (typeof hooks.report === 'function') {
      try {
        extra = hooks.report();
      } catch (e) {
        pushBounded(st.errors, `hooks.report(): ${e && e.message}`);
      }
    }
    let frame = null;
    try {
      frame = frameStats();
    } catch (e) {
      pushBounded(st.errors, `frameStats(): ${e && e.message}`);
    }
    return { ...st, extra, frame, videoWidth: video.videoWidth, videoHeight: video.videoHeight };
  }

  window.__shoalTest = { state: st, snapshot, frameStats, hls: null };

  video.addEventListener('playing', () => {
    if (st.firstPlayingAtMs === null) {
      st.firstPlayingAtMs = now();
      st.startupMs = performance.now();
    }
    if (openStall) {
      openStall.durationMs = now() - openStall.atMs;
      openStall = null;
    }
  });
  video.addEventListener('waiting', () => {
    if (st.firstPlayingAtMs === null || video.seeking) return;
    openStall = { atMs: now(), durationMs: null, currentTime: video.currentTime };
    pushBounded(st.stalls, openStall);
  });
  video.addEventListener('error', () => {
    const e = video.error;
    pushBounded(st.errors, `video element error ${e ? e.code : '?'}: ${e ? e.message : ''}`);
  });
  window.addEventListener('error', (e) => pushBounded(st.errors, `uncaught: ${e.message}`));

  if (!window.Hls || !window.Hls.isSupported()) {
    st.errors.push('hls.js missing or MediaSource unsupported');
    return;
  }
  const Hls = window.Hls;
  let hlsConfig = Object.assign({ enableWorker: true }, cfg.hlsConfig || {});
  if (typeof hooks.hlsConfig === 'function') hlsConfig = hooks.hlsConfig(hlsConfig) || hlsConfig;
  const hls = new Hls(hlsConfig);
  window.__shoalTest.hls = hls;

  hls.on(Hls.Events.ERROR, (_evt, d) => {
    const atMs = now();
    pushBounded(st.hlsErrors, { atMs, type: d.type, details: d.details, fatal: !!d.fatal });
    if (d.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR && st.firstPlayingAtMs !== null) {
      pushBounded(st.bufferStalledErrors, atMs);
    }
    if (d.fatal) pushBounded(st.errors, `hls.js fatal ${d.type}/${d.details}${d.reason ? ': ' + d.reason : ''}`);
  });
  hls.on(Hls.Events.FRAG_LOADED, (_evt, d) => {
    st.fragCount += 1;
    const loaded = d.frag && d.frag.stats ? d.frag.stats.loaded : 0;
    st.fragBytes += loaded || (d.payload ? d.payload.byteLength : 0);
  });
  hls.on(Hls.Events.MANIFEST_PARSED, (_evt, d) => {
    st.levels = d.levels.map((l) => ({ bitrate: l.bitrate, width: l.width, height: l.height, codecs: l.codecSet }));
    video.play().catch((e) => pushBounded(st.errors, `video.play(): ${e.message}`));
  });

  if (typeof hooks.onHls === 'function') hooks.onHls(hls, video);
  hls.loadSource(cfg.url);
  hls.attachMedia(video);
  setInterval(sample, cfg.sampleIntervalMs || 500);
})();
