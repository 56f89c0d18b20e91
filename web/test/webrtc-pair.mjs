#!/usr/bin/env node
// Two Chromium pages (separate browser contexts) open a WebRTC DataChannel to each other and
// exchange a message; reports the ICE candidates each side gathered and the pair that won.
// Proves that a namespace gives Chromium usable host candidates.
//
//   node web/test/webrtc-pair.mjs <config.json> <result.json>
// config: { chromium, outDir, hideLocalIpsWithMdns?: bool, timeoutMs?: number }
// result: { browserVersion, offerCandidates: [sdp lines], answerCandidates, opened, echoed,
//           selectedPair: {local, remote} | null, error: string | null }

import fs from 'node:fs';
import { chromium } from 'playwright-core';
import { BASE_CHROMIUM_ARGS } from './lib/config.mjs';

const [configPath, resultPath] = process.argv.slice(2);
if (!configPath || !resultPath) {
  process.stderr.write('usage: webrtc-pair.mjs <config.json> <result.json>\n');
  process.exit(1);
}
const cfg = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const timeoutMs = cfg.timeoutMs ?? 15000;
const args = [...BASE_CHROMIUM_ARGS];
if (!cfg.hideLocalIpsWithMdns) args.push('--disable-features=WebRtcHideLocalIpsWithMdns');

const watchdog = setTimeout(() => {
  process.stderr.write('webrtc-pair: watchdog fired\n');
  process.exit(3);
}, timeoutMs + 30000);
watchdog.unref();

// Runs in the pages. Non-trickle: each side waits for gathering to complete, so the SDP
// carries every candidate it found.
const pageSide = () => {
  window.__gathered = (pc, ms) =>
    new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      const t = setTimeout(resolve, ms);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') {
          clearTimeout(t);
          resolve();
        }
      });
    });
  window.__candidates = (sdp) => sdp.split(/\r?\n/).filter((l) => l.startsWith('a=candidate:'));
};

const browser = await chromium.launch({ executablePath: cfg.chromium, headless: true, args });
const result = {
  browserVersion: browser.version(),
  offerCandidates: [],
  answerCandidates: [],
  opened: false,
  echoed: false,
  selectedPair: null,
  error: null,
};
try {
  const [a, b] = await Promise.all([0, 1].map(async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.setContent('<!doctype html><title>webrtc</title>');
    await page.evaluate(pageSide);
    return page;
  }));
  const offer = await a.evaluate(async (ms) => {
    const pc = new RTCPeerConnection({ iceServers: [] });
    window.pc = pc;
    window.dc = pc.createDataChannel('shoal-test');
    window.dcOpen = new Promise((r) => window.dc.addEventListener('open', () => r(true)));
    await pc.setLocalDescription(await pc.createOffer());
    await window.__gathered(pc, ms);
    return pc.localDescription.toJSON();
  }, timeoutMs / 3);
  result.offerCandidates = await a.evaluate((sdp) => window.__candidates(sdp), offer.sdp);
  const answer = await b.evaluate(async ([o, ms]) => {
    const pc = new RTCPeerConnection({ iceServers: [] });
    window.pc = pc;
    pc.addEventListener('datachannel', (e) => {
      e.channel.addEventListener('message', (m) => e.channel.send(`echo:${m.data}`));
    });
    await pc.setRemoteDescription(o);
    await pc.setLocalDescription(await pc.createAnswer());
    await window.__gathered(pc, ms);
    return pc.localDescription.toJSON();
  }, [offer, timeoutMs / 3]);
  result.answerCandidates = await b.evaluate((sdp) => window.__candidates(sdp), answer.sdp);
  const outcome = await a.evaluate(async ([ans, ms]) => {
    await window.pc.setRemoteDescription(ans);
    const timeout = new Promise((r) => setTimeout(() => r(false), ms));
    const opened = await Promise.race([window.dcOpen, timeout]);
    if (!opened) return { opened: false, echoed: false, pair: null };
    const echo = new Promise((r) => window.dc.addEventListener('message', (m) => r(m.data === 'echo:ping')));
    window.dc.send('ping');
    const echoed = await Promise.race([echo, timeout]);
    let pair = null;
    const stats = await window.pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated) {
        const l = stats.get(s.localCandidateId);
        const r = stats.get(s.remoteCandidateId);
        pair = {
          local: `${l.candidateType} ${l.address}:${l.port}/${l.protocol}`,
          remote: `${r.candidateType} ${r.address}:${r.port}/${r.protocol}`,
        };
      }
    });
    return { opened: true, echoed, pair };
  }, [answer, timeoutMs]);
  result.opened = outcome.opened;
  result.echoed = outcome.echoed;
  result.selectedPair = outcome.pair;
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close().catch(() => {});
}
fs.writeFileSync(resultPath, JSON.stringify(result, null, 1));
