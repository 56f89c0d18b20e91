// Appended to web/dist/shoal.iife.js and injected into every test page before its scripts:
// installs the Shoal SDK into the runner's hls.js player (web/test/player.js hooks) and
// reports its stats and every segment it handed to the player.
;(() => {
  const cfg = __SHOAL_TEST_CONFIG__;
  const segments = [];
  const events = [];
  const t0 = Date.now();
  const note = (kind, data) => {
    if (events.length < 500) events.push({ atMs: Date.now() - t0, kind, ...data });
  };
  const shoal = new window.Shoal({
    ...cfg,
    log: (level, msg) => {
      if (level !== 'debug') console.log(`[shoal ${level}] ${msg}`);
    },
  });
  shoal.on('segment', (s) => {
    if (segments.length < 5000) segments.push({ atMs: Date.now() - t0, ...s });
  });
  shoal.on('p2p', (p) => note('p2p', p));
  shoal.on('peerConnected', (p) => note('peerConnected', p));
  shoal.on('peerDisconnected', (p) => note('peerDisconnected', p));
  shoal.on('verification', (v) => note('verification', v));
  window.__shoalTestHooks = {
    hlsConfig: (c) => shoal.hlsConfig(c),
    onHls: (hls) => shoal.attach(hls),
    report: () => ({ stats: shoal.stats(), segments, events }),
  };
})();
