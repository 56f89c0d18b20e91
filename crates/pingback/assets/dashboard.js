// Shoal pingback dashboard: polls /v1/pingback/summary and draws hand-written SVG charts.
// No library, nothing from the internet (the page's CSP allows only its own origin).
'use strict';

(function () {
  const POLL_MS = 2000;
  const COLORS = {
    cdn: '#f0a04b', peer: '#4fc3a1', p2p: '#5aa9e6', control: '#e0678a', net: '#b48ef0', all: '#d8e1ea', muted: '#8796a8',
  };
  const state = { updates: 0, errors: 0, last: null, lastOk: 0 };
  window.__dashboard = state;

  const $ = (id) => document.getElementById(id);
  const num = (v) => (typeof v === 'number' && isFinite(v) ? v : null);
  const fmt = (v, digits) => (num(v) === null ? '–' : v.toFixed(digits));
  const pct = (v, digits = 1) => (num(v) === null ? '–' : `${(v * 100).toFixed(digits)} %`);
  const ms = (v) => (num(v) === null ? '–' : v >= 10000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`);
  const clock = (t) => new Date(t).toLocaleTimeString([], { hour12: false });
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // series: [{name, color, values: (number|null)[]}], times: ms[]; opts: {max, min, unit}
  function lineChart(el, times, series, opts = {}) {
    const W = 600, H = 180, L = 46, R = 10, T = 10, B = 36;
    const pw = W - L - R, ph = H - T - B;
    let hi = 0;
    let lo = opts.min ?? 0;
    let points = 0;
    for (const s of series) for (const v of s.values) if (num(v) !== null) { hi = Math.max(hi, v); lo = Math.min(lo, v); points++; }
    const top = opts.max ?? niceMax(hi * 1.1 || opts.floor || 1);
    const bottom = lo < 0 ? -niceMax(-lo * 1.1) : 0;
    const n = times.length;
    const x = (i) => L + (n <= 1 ? pw : (i / (n - 1)) * pw);
    const y = (v) => T + ph - ((v - bottom) / (top - bottom || 1)) * ph;
    let svg = `<svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img">`;
    for (let k = 0; k <= 4; k++) {
      const v = bottom + ((top - bottom) * k) / 4;
      const yy = y(v).toFixed(1);
      svg += `<line class="axis" x1="${L}" x2="${W - R}" y1="${yy}" y2="${yy}"/>`;
      const label = opts.unit === "%" ? `${+(v * 100).toFixed(2)}` : `${+v.toFixed(v < 10 ? 2 : 1)}`;
      svg += `<text class="tick" x="${L - 4}" y="${(+yy + 3).toFixed(1)}" text-anchor="end">${label}</text>`;
    }
    if (n > 1) {
      for (const [i, anchor] of [[0, 'start'], [Math.floor((n - 1) / 2), 'middle'], [n - 1, 'end']]) {
        svg += `<text class="tick" x="${x(i).toFixed(1)}" y="${H - B + 14}" text-anchor="${anchor}">${clock(times[i])}</text>`;
      }
    }
    if (points === 0) svg += `<text class="empty" x="${L + pw / 2}" y="${T + ph / 2}" text-anchor="middle">waiting for reports…</text>`;
    series.forEach((s, si) => {
      let d = '';
      let pen = false;
      s.values.forEach((v, i) => {
        if (num(v) === null) { pen = false; return; }
        d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      });
      const dash = s.dash ? ' stroke-dasharray="6 4"' : '';
      if (d) svg += `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2" stroke-linejoin="round"${dash} data-series="${esc(s.name)}"/>`;
      const lx = L + si * 150;
      svg += `<rect x="${lx}" y="${H - 12}" width="10" height="4" fill="${s.color}"/>`;
      svg += `<text class="legend" x="${lx + 14}" y="${H - 7}" fill="${s.color}">${esc(s.name)}</text>`;
    });
    svg += '</svg>';
    el.innerHTML = svg;
    el.dataset.points = String(points);
  }

  function row(cells) {
    const tr = document.createElement('tr');
    for (const c of cells) {
      const td = document.createElement('td');
      if (c && typeof c === 'object') {
        td.textContent = c.text;
        if (c.cls) td.className = c.cls;
      } else td.textContent = c;
      tr.appendChild(td);
    }
    return tr;
  }

  function render(s) {
    const chart = s.chart || [];
    const times = chart.map((p) => p.start_ms);
    // A window without session time in a group has no data for it (drawn as a gap).
    const col = (g, f) => chart.map((p) => (p[g].viewers > 0 ? num(p[g][f]) : null));
    lineChart($('c-viewers'), times, [
      { name: 'all', color: COLORS.all, values: col('all', 'viewers') },
      { name: 'P2P', color: COLORS.p2p, values: col('p2p', 'viewers') },
      { name: 'control', color: COLORS.control, values: col('control', 'viewers') },
    ]);
    lineChart($('c-rates'), times, [
      { name: 'CDN', color: COLORS.cdn, values: col('all', 'http_mbps') },
      { name: 'peers', color: COLORS.peer, values: col('all', 'p2p_mbps') },
    ]);
    lineChart($('c-offload'), times, [
      { name: 'offload', color: COLORS.peer, values: col('all', 'offload') },
      { name: 'net offload', color: COLORS.net, values: col('all', 'net_offload'), dash: true },
    ], { unit: '%', max: 1 });
    lineChart($('c-stall'), times, [
      { name: 'P2P', color: COLORS.p2p, values: col('p2p', 'stall_ratio') },
      { name: 'control', color: COLORS.control, values: col('control', 'stall_ratio') },
    ], { unit: '%', floor: 0.001 });
    lineChart($('c-startup'), times, [
      { name: 'P2P', color: COLORS.p2p, values: chart.map((p) => num(p.p2p_startup_p50_ms)) },
      { name: 'control', color: COLORS.control, values: chart.map((p) => num(p.control_startup_p50_ms)) },
    ], { floor: 100 });
    lineChart($('c-peers'), times, [
      { name: 'peers/viewer', color: COLORS.peer, values: col('p2p', 'peers_per_viewer') },
      { name: 'conn. success ×10', color: COLORS.net, values: col('p2p', 'connect_success').map((v) => (v === null ? null : v * 10)) },
    ]);

    const t = s.totals || {};
    $('t-viewers').textContent = fmt(t.viewers, 1);
    $('t-http').textContent = `${fmt(t.http_mbps, 2)} Mbit/s`;
    $('t-p2p').textContent = `${fmt(t.p2p_mbps, 2)} Mbit/s`;
    $('t-offload').textContent = pct(t.offload);
    $('t-net').textContent = pct(t.net_offload);
    const rp = s.recent_p2p || {}, rc = s.recent_control || {};
    $('t-stall').textContent = `${pct(rp.stall_ratio, 2)} / ${pct(rc.stall_ratio, 2)}`;
    const hp = s.hour_p2p || {}, hc = s.hour_control || {};
    $('t-startup').textContent = `${ms(hp.startup_p50_ms)} / ${ms(hc.startup_p50_ms)}`;

    const tb = document.querySelector('#streams tbody');
    tb.replaceChildren();
    for (const r of s.streams || []) {
      const c = r.current, rp = r.recent_p2p, rc = r.recent_control;
      const p2p = r.p2p_on
        ? (r.localities_off.length ? { text: `off in ${r.localities_off.join(', ')}`, cls: 'off' } : { text: 'on', cls: 'on' })
        : { text: 'OFF (protection)', cls: 'off' };
      tb.appendChild(row([
        r.stream, fmt(c.viewers, 1), r.renditions.map(([n, v]) => `${n || '?'}:${v.toFixed(1)}`).join(' '),
        fmt(c.http_mbps, 2), fmt(c.p2p_mbps, 2), pct(c.offload), pct(c.net_offload), pct(r.cdn_saving_vs_control),
        pct(rp.stall_ratio, 2), pct(rc.stall_ratio, 2), ms(r.hour_p2p.startup_p50_ms), ms(r.hour_control.startup_p50_ms),
        ms(r.recent.latency_p50_ms), fmt(c.peers_per_viewer, 1), pct(c.connect_success, 0), fmt(r.recent.integrity_failures, 0), p2p,
      ]));
    }
    $('streams-note').textContent = `Current = the newest complete ${s.window_ms / 1000}-s window; stall ratios of P2P vs control over the last ${s.recent_s} s; startup times of sessions started in the last hour. Holdback (control group): ${s.holdback_percent === null ? 'not set by this process' : `${s.holdback_percent} %`} of sessions.`;

    const hb = document.querySelector('#health tbody');
    hb.replaceChildren();
    const health = [];
    if (s.tracker && typeof s.tracker === 'object') for (const [k, v] of Object.entries(s.tracker)) health.push([`tracker ${k}`, String(v)]);
    else health.push(['tracker', 'not in this process']);
    health.push(['peers per viewer (P2P)', fmt(rp.peers_per_viewer, 2)]);
    health.push(['connection success (P2P)', pct(rp.connect_success, 0)]);
    health.push(['sessions tracked', String(s.sessions)]);
    health.push(['windows / aggregates kept', `${s.store.windows} / ${s.store.aggregates}`]);
    health.push(['keys folded / windows evicted', `${s.store.keys_folded} / ${s.store.windows_evicted}`]);
    for (const [k, v] of health) hb.appendChild(row([k, v]));

    $('protection-note').textContent = s.protection_enabled
      ? `P2P is switched off for new sessions where P2P sessions stall measurably more than the control group; ${s.probe_percent} % of new sessions keep P2P as a probe meanwhile.`
      : 'Automatic protection is disabled.';
    const sb = document.querySelector('#scopes tbody');
    sb.replaceChildren();
    for (const v of s.protection || []) {
      const e = v.evidence;
      sb.appendChild(row([
        v.locality ? `${v.stream} @ ${v.locality}` : v.stream,
        v.p2p ? { text: 'on', cls: 'on' } : { text: 'OFF', cls: 'off' },
        v.since_ms ? clock(v.since_ms) : '–',
        `${fmt(e.p2p_watch_s, 0)} s`, `${fmt(e.control_watch_s, 0)} s`,
        pct(e.p2p_stall_ratio, 2), pct(e.control_stall_ratio, 2),
        num(e.p_value) === null ? '–' : e.p_value.toExponential(1),
      ]));
    }
    const dl = $('decisions');
    dl.replaceChildren();
    for (const d of s.decisions || []) {
      const li = document.createElement('li');
      li.className = d.action;
      li.textContent = `${clock(d.at_ms)} · ${d.stream}${d.locality ? ` @ ${d.locality}` : ''} · P2P ${d.action.toUpperCase()} · ${d.reason}`;
      dl.appendChild(li);
    }
    if (!(s.decisions || []).length) {
      const li = document.createElement('li');
      li.textContent = 'none yet';
      dl.appendChild(li);
    }
    $('status').className = 'status';
    $('status').textContent = `updated ${clock(s.now_ms)} · ${s.window_ms / 1000}-s windows · newest complete ${s.current_start_ms ? clock(s.current_start_ms) : '–'} · ${chart.filter((p) => p.all.reports > 0).length} windows with reports`;
  }

  async function poll() {
    try {
      const res = await fetch('/v1/pingback/summary', { cache: 'no-store' });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const s = await res.json();
      render(s);
      state.last = s;
      state.updates++;
      state.lastOk = Date.now();
    } catch (e) {
      state.errors++;
      $('status').className = 'status stale';
      $('status').textContent = `no data (${e.message}); last update ${state.lastOk ? clock(state.lastOk) : 'never'}`;
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }
  poll();
})();
