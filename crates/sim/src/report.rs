//! What a run reports: offload and net offload against the theoretical bound, CDN fetches per
//! segment, QoE (rebuffering, stalls, start-up, latency behind the live edge), upload use and
//! fairness, connections, messages, the invariants and the simulator's own speed — for the
//! P2P run and its CDN-only baseline side by side.
//!
//! Definitions (also in `docs/simulator.md`):
//! - **offload** (gross) = peer bytes accepted ÷ (peer bytes accepted + CDN segment bytes
//!   received).
//! - **net offload** = peer bytes accepted ÷ (every byte the CDN sent, manifests and cancelled
//!   transfers included, + every peer payload byte that arrived, duplicates, data after a
//!   cancel and rejected data included): waste counts against it.
//! - **CDN savings** = 1 − CDN bytes ÷ CDN bytes of the CDN-only baseline.
//! - **entry bound** = 1 − Σ size ÷ Σ size × viewers, over the segments played: each segment
//!   must reach the swarm once over HTTP (1 − 1/N per segment, weighted by bytes).
//! - **upload bound** = upload capacity offered (uploading, connectable viewers, capacity ×
//!   time online) ÷ bytes played.
//! - **bound** = min(entry, upload); **bound ratio** = net offload ÷ bound.

use serde::Serialize;

use crate::metrics::{quantile, Invariants};
use crate::scenario::Scenario;
use crate::world::{EngineTotals, RunOutput};

#[derive(Clone, Debug, Serialize)]
pub struct Quantiles {
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
}

impl Quantiles {
    fn of(mut v: Vec<f64>) -> Self {
        let mean = (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let p50 = quantile(&mut v, 0.5);
        let p95 = quantile(&mut v, 0.95);
        let max = v.last().copied();
        Quantiles { mean, p50, p95, max }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Bytes {
    pub cdn_total: u64,
    pub cdn_segments: u64,
    pub cdn_manifests: u64,
    /// Segment bytes the engines received over HTTP (what arrived of what the CDN sent).
    pub cdn_segments_received: u64,
    pub peer_accepted: u64,
    pub peer_arrived: u64,
    pub peer_sent: u64,
    /// Peer bytes that arrived but were not used (duplicates, after a cancel, rejected).
    pub peer_wasted: u64,
    /// Bytes the engines threw away (HTTP and peers), as they count them.
    pub engine_wasted: u64,
    pub played: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Bound {
    pub entry: f64,
    pub upload: f64,
    pub bound: f64,
    /// Net offload ÷ bound.
    pub ratio: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Qoe {
    /// Stall time ÷ (stall time + play time), over viewers that started.
    pub rebuffer_ratio: f64,
    pub stalls: u64,
    pub viewers_with_stalls: u64,
    pub stalls_per_viewer_hour: f64,
    pub startup_ms: Quantiles,
    pub start_failures: u64,
    pub behind_live_edge_ms: Quantiles,
    pub deliveries: u64,
    pub deliver_failed: u64,
    /// Publication to delivery, milliseconds, for segments from peers, the CDN, both.
    pub since_publish_ms: [Quantiles; 3],
}

#[derive(Clone, Debug, Serialize)]
pub struct Upload {
    /// Σ uploaded ÷ Σ capacity × time online, uploading viewers online ≥ 60 s.
    pub utilisation: f64,
    pub utilisation_per_peer: Quantiles,
    /// Jain's fairness index of per-peer utilisation (1 = all equal).
    pub fairness_jain: f64,
    /// Share of uploaded bytes sent by the 10 % who uploaded most.
    pub top10_share: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Speed {
    pub wall_s: f64,
    pub simulated_s: f64,
    pub sim_s_per_wall_s: f64,
    pub events: u64,
    pub events_per_s: f64,
    pub peak_rss_mib: Option<f64>,
    pub chunks_hashed: u64,
    pub chunk_lookups: u64,
    pub signatures_checked: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub t_s: f64,
    pub viewers: f64,
    pub cdn_mbps: f64,
    pub peer_mbps: f64,
    pub offload: Option<f64>,
    pub stalls: u64,
    pub rebuffer_ratio: f64,
    pub behind_live_edge_p50_s: Option<f64>,
    pub connections_per_viewer: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub p2p: bool,
    pub viewers_total: u64,
    pub viewers_peak: f64,
    pub bytes: Bytes,
    pub offload: f64,
    pub net_offload: f64,
    /// 1 − CDN bytes ÷ baseline CDN bytes (filled in when a baseline ran).
    pub cdn_savings: Option<f64>,
    pub bound: Bound,
    pub cdn_fetches_per_segment: Quantiles,
    pub cdn_copies_per_segment: Quantiles,
    pub qoe: Qoe,
    pub upload: Upload,
    pub connections_per_peer: Quantiles,
    pub connect_attempts: u64,
    pub connect_failed: u64,
    pub connect_refused: u64,
    pub connections_opened: u64,
    pub unconnectable_pairs: f64,
    pub announces: u64,
    pub requests: u64,
    pub messages_per_s: f64,
    pub messages_per_viewer_s: f64,
    pub engine: EngineTotalsOut,
    pub invariants: Invariants,
    pub invariants_ok: bool,
    pub speed: Speed,
    pub series: Vec<Point>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EngineTotalsOut {
    pub cdn_fetches_edge: u64,
    pub cdn_fallback_deadline: u64,
    pub cdn_fallback_no_source: u64,
    pub cdn_fallback_startup: u64,
    pub delivered_late: u64,
    pub verify_failures: u64,
    pub http_failures: u64,
    pub uploads_served: u64,
    pub uploads_busy: u64,
    pub uploads_absent: u64,
    pub peers_banned: u64,
    pub deliveries_from_peers: u64,
    pub deliveries_from_cdn: u64,
    pub deliveries_mixed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub description: String,
    pub seed: u64,
    pub duration_s: u64,
    pub renditions: Vec<(String, u32)>,
    pub mean_bitrate_kbps: f64,
    pub mean_upload_kbps: f64,
    pub upload_to_bitrate: f64,
    pub p2p: RunSummary,
    pub baseline: Option<RunSummary>,
    pub versus_baseline: Option<Versus>,
}

/// The P2P run minus the baseline, for the QoE guardrails.
#[derive(Clone, Debug, Serialize)]
pub struct Versus {
    pub rebuffer_ratio_delta: f64,
    pub stalls_delta: i64,
    pub startup_p50_delta_ms: Option<f64>,
    pub startup_p95_delta_ms: Option<f64>,
    pub behind_live_edge_p50_delta_ms: Option<f64>,
    pub behind_live_edge_p95_delta_ms: Option<f64>,
    pub cdn_savings: f64,
}

fn jain(v: &[f64]) -> f64 {
    let s: f64 = v.iter().sum();
    let s2: f64 = v.iter().map(|x| x * x).sum();
    if s2 <= 0.0 {
        return 1.0;
    }
    s * s / (v.len() as f64 * s2)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

pub fn summarize(sc: &Scenario, out: &RunOutput) -> RunSummary {
    let c = &out.counters;
    let e: &EngineTotals = &c.engine;
    let sim_s = (out.end_us - out.start_us) as f64 / 1e6;
    let cdn_total = c.cdn_segment_bytes + c.cdn_manifest_bytes;
    let peer_accepted = e.p2p_down_bytes;
    let offload = ratio(peer_accepted as f64, (peer_accepted + e.http_bytes) as f64);
    let net_offload = ratio(peer_accepted as f64, (cdn_total + c.peer_payload_arrived) as f64);

    // Bounds over the segments that were played.
    let mut entries = 0f64;
    let mut played = 0f64;
    let mut fetches = Vec::new();
    let mut copies = Vec::new();
    let first_full = crate::origin::FIRST_SEQ + sc.stream.playlist_window as u64 + 1;
    let last_full = out.segments.iter().map(|s| s.1).max().unwrap_or(0).saturating_sub(5);
    for &(_, seq, size, deliveries, requests, bytes) in &out.segments {
        if deliveries == 0 {
            continue;
        }
        entries += size as f64;
        played += size as f64 * deliveries as f64;
        if seq >= first_full && seq <= last_full {
            fetches.push(requests as f64);
            copies.push(bytes as f64 / size.max(1) as f64);
        }
    }
    let entry = if played > 0.0 { 1.0 - entries / played } else { 0.0 };
    let upload = if played > 0.0 { out.upload_capacity_bytes / played } else { 0.0 };
    let bound = entry.min(upload).max(0.0);

    // QoE.
    let started: Vec<_> = out.viewers.iter().filter(|v| v.startup_us.is_some()).collect();
    let stall_us: u64 = started.iter().map(|v| v.stall_us).sum();
    let play_us: u64 = started.iter().map(|v| v.play_us).sum();
    let stalls: u64 = out.viewers.iter().map(|v| v.stalls as u64).sum();
    let online_h: f64 = out.viewers.iter().map(|v| v.online_us as f64).sum::<f64>() / 3.6e9;
    let joined = out.viewers.iter().filter(|v| v.online_us > 0).count() as u64;
    let start_failures =
        out.viewers.iter().filter(|v| v.online_us > 10_000_000 && v.startup_us.is_none()).count() as u64;
    let qoe = Qoe {
        rebuffer_ratio: ratio(stall_us as f64, (stall_us + play_us) as f64),
        stalls,
        viewers_with_stalls: out.viewers.iter().filter(|v| v.stalls > 0).count() as u64,
        stalls_per_viewer_hour: ratio(stalls as f64, online_h),
        startup_ms: Quantiles::of(
            started.iter().filter_map(|v| v.startup_us).map(|s| s as f64 / 1e3).collect(),
        ),
        start_failures,
        behind_live_edge_ms: Quantiles {
            mean: out.latency.mean(),
            p50: out.latency.quantile(0.5),
            p95: out.latency.quantile(0.95),
            max: out.latency.quantile(1.0),
        },
        deliveries: c.deliveries,
        deliver_failed: c.deliver_failed,
        since_publish_ms: std::array::from_fn(|i| {
            let h = &out.since_publish[i];
            Quantiles { mean: h.mean(), p50: h.quantile(0.5), p95: h.quantile(0.95), max: h.quantile(1.0) }
        }),
    };

    // Upload use.
    let ups: Vec<_> = out.viewers.iter().filter(|v| v.uploader && v.online_us >= 60_000_000).collect();
    let util: Vec<f64> =
        ups.iter().map(|v| v.uploaded as f64 / (v.up_bps as f64 / 8.0 * v.online_us as f64 / 1e6)).collect();
    let cap: f64 = ups.iter().map(|v| v.up_bps as f64 / 8.0 * v.online_us as f64 / 1e6).sum();
    let sent: f64 = ups.iter().map(|v| v.uploaded as f64).sum();
    let mut by_bytes: Vec<f64> = out.viewers.iter().map(|v| v.uploaded as f64).collect();
    by_bytes.sort_by(|a, b| b.total_cmp(a));
    let top = (by_bytes.len() / 10).max(1).min(by_bytes.len());
    let all_up: f64 = by_bytes.iter().sum();
    let upload_m = Upload {
        utilisation: ratio(sent, cap),
        fairness_jain: if util.is_empty() { 1.0 } else { jain(&util) },
        utilisation_per_peer: Quantiles::of(util),
        top10_share: ratio(by_bytes[..top].iter().sum(), all_up),
    };

    let viewer_s: f64 = out.viewers.iter().map(|v| v.online_us as f64 / 1e6).sum();
    let series = points(out);
    let viewers_peak = series.iter().map(|p| p.viewers).fold(0.0, f64::max);
    let peak = out.peak_rss_bytes.map(|b| b as f64 / (1024.0 * 1024.0));
    RunSummary {
        p2p: out.p2p,
        viewers_total: joined,
        viewers_peak,
        bytes: Bytes {
            cdn_total,
            cdn_segments: c.cdn_segment_bytes,
            cdn_manifests: c.cdn_manifest_bytes,
            cdn_segments_received: e.http_bytes,
            peer_accepted,
            peer_arrived: c.peer_payload_arrived,
            peer_sent: c.peer_payload_sent,
            peer_wasted: c.peer_payload_arrived.saturating_sub(peer_accepted),
            engine_wasted: e.wasted_bytes,
            played: c.consumed_bytes,
        },
        offload,
        net_offload,
        cdn_savings: None,
        bound: Bound { entry, upload, bound, ratio: ratio(net_offload, bound) },
        cdn_fetches_per_segment: Quantiles::of(fetches),
        cdn_copies_per_segment: Quantiles::of(copies),
        qoe,
        upload: upload_m,
        connections_per_peer: Quantiles {
            mean: out.connections.mean(),
            p50: out.connections.quantile(0.5).map(|x| x.floor()),
            p95: out.connections.quantile(0.95).map(|x| x.floor()),
            max: out.connections.quantile(1.0).map(|x| x.floor()),
        },
        connect_attempts: c.connect_attempts,
        connect_failed: c.connect_failed,
        connect_refused: c.connect_refused,
        connections_opened: c.connections_opened,
        unconnectable_pairs: out.unconnectable_pairs,
        announces: c.announces,
        requests: c.requests,
        messages_per_s: ratio(c.peer_msgs as f64, sim_s),
        messages_per_viewer_s: ratio(c.peer_msgs as f64, viewer_s),
        engine: EngineTotalsOut {
            cdn_fetches_edge: e.cdn_fetches_edge,
            cdn_fallback_deadline: e.cdn_fallback_deadline,
            cdn_fallback_no_source: e.cdn_fallback_no_source,
            cdn_fallback_startup: e.cdn_fallback_startup,
            delivered_late: e.delivered_late,
            verify_failures: e.verify_failures,
            http_failures: e.http_failures,
            uploads_served: e.uploads_served,
            uploads_busy: e.uploads_busy,
            uploads_absent: e.uploads_absent,
            peers_banned: e.peers_banned,
            deliveries_from_peers: c.from_peers,
            deliveries_from_cdn: c.from_cdn,
            deliveries_mixed: c.mixed,
        },
        invariants_ok: out.invariants.ok(out.p2p),
        invariants: out.invariants.clone(),
        speed: Speed {
            wall_s: out.wall_s,
            simulated_s: sim_s,
            sim_s_per_wall_s: ratio(sim_s, out.wall_s),
            events: c.events,
            events_per_s: ratio(c.events as f64, out.wall_s),
            peak_rss_mib: peak,
            chunks_hashed: out.crypto.chunks_hashed,
            chunk_lookups: out.crypto.chunk_lookups,
            signatures_checked: out.crypto.signatures_checked,
        },
        series,
    }
}

fn points(out: &RunOutput) -> Vec<Point> {
    let span = (out.end_us - out.start_us) as f64;
    let b_s = out.series.bucket_us as f64 / 1e6;
    out.series
        .buckets
        .iter()
        .enumerate()
        .filter(|(i, _)| (*i as f64) * b_s * 1e6 < span)
        .map(|(i, b)| {
            let total = b.cdn_bytes + b.peer_bytes;
            let viewers = ratio(b.viewers_sum as f64, b.viewer_samples as f64);
            let play_time = viewers * b_s * 1e6;
            Point {
                t_s: i as f64 * b_s,
                viewers,
                cdn_mbps: b.cdn_bytes as f64 * 8.0 / b_s / 1e6,
                peer_mbps: b.peer_bytes as f64 * 8.0 / b_s / 1e6,
                offload: (total > 0).then(|| b.peer_bytes as f64 / total as f64),
                stalls: b.stalls,
                rebuffer_ratio: ratio(b.stall_us as f64, play_time),
                behind_live_edge_p50_s: b.latency.quantile(0.5).map(|x| x / 1e3),
                connections_per_viewer: ratio(b.connections_sum as f64, b.viewers_sum as f64),
            }
        })
        .collect()
}

impl Report {
    pub fn new(sc: &Scenario, seed: u64, p2p: RunSummary, baseline: Option<RunSummary>) -> Report {
        let mut p2p = p2p;
        let versus = baseline.as_ref().map(|b| {
            let savings = 1.0 - ratio(p2p.bytes.cdn_total as f64, b.bytes.cdn_total as f64);
            p2p.cdn_savings = Some(savings);
            let d = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
            Versus {
                rebuffer_ratio_delta: p2p.qoe.rebuffer_ratio - b.qoe.rebuffer_ratio,
                stalls_delta: p2p.qoe.stalls as i64 - b.qoe.stalls as i64,
                startup_p50_delta_ms: d(p2p.qoe.startup_ms.p50, b.qoe.startup_ms.p50),
                startup_p95_delta_ms: d(p2p.qoe.startup_ms.p95, b.qoe.startup_ms.p95),
                behind_live_edge_p50_delta_ms: d(
                    p2p.qoe.behind_live_edge_ms.p50,
                    b.qoe.behind_live_edge_ms.p50,
                ),
                behind_live_edge_p95_delta_ms: d(
                    p2p.qoe.behind_live_edge_ms.p95,
                    b.qoe.behind_live_edge_ms.p95,
                ),
                cdn_savings: savings,
            }
        });
        let mean_up = sc.mean_upload_mbps() * 1_000.0;
        let mean_br = sc.mean_bitrate_kbps();
        Report {
            scenario: sc.name.clone(),
            description: sc.description.clone(),
            seed,
            duration_s: sc.duration_s,
            renditions: sc.stream.renditions.iter().map(|r| (r.name.clone(), r.bitrate_kbps)).collect(),
            mean_bitrate_kbps: mean_br,
            mean_upload_kbps: mean_up,
            upload_to_bitrate: ratio(mean_up, mean_br),
            p2p,
            baseline,
            versus_baseline: versus,
        }
    }

    /// A plain-text summary for the terminal.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let p = &self.p2p;
        let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.0}"));
        let _ = writeln!(
            s,
            "scenario {} (seed {}): {} s, {} viewers (peak {:.0}), renditions {:?}, mean upload {:.0} kbit/s = {:.2} × bitrate",
            self.scenario,
            self.seed,
            self.duration_s,
            p.viewers_total,
            p.viewers_peak,
            self.renditions,
            self.mean_upload_kbps,
            self.upload_to_bitrate
        );
        let _ = writeln!(
            s,
            "  offload {:.2}%  net offload {:.2}%  bound {:.2}% (entry {:.2}%, upload {:.1}%)  ratio {:.3}",
            p.offload * 100.0,
            p.net_offload * 100.0,
            p.bound.bound * 100.0,
            p.bound.entry * 100.0,
            p.bound.upload * 100.0,
            p.bound.ratio
        );
        let _ = writeln!(
            s,
            "  CDN {:.1} MB (manifests {:.1} MB), peers {:.1} MB accepted / {:.1} MB arrived; CDN fetches per segment mean {:.2} p95 {}; CDN copies p95 {:.2}",
            p.bytes.cdn_total as f64 / 1e6,
            p.bytes.cdn_manifests as f64 / 1e6,
            p.bytes.peer_accepted as f64 / 1e6,
            p.bytes.peer_arrived as f64 / 1e6,
            p.cdn_fetches_per_segment.mean.unwrap_or(0.0),
            f(p.cdn_fetches_per_segment.p95),
            p.cdn_copies_per_segment.p95.unwrap_or(0.0),
        );
        let row = |name: &str, r: &RunSummary| {
            format!(
                "  {name:<9} rebuffer {:.4}%  stalls {:>5} ({} viewers)  startup p50/p95 {}/{} ms  behind live edge p50/p95 {}/{} ms  start failures {}",
                r.qoe.rebuffer_ratio * 100.0,
                r.qoe.stalls,
                r.qoe.viewers_with_stalls,
                f(r.qoe.startup_ms.p50),
                f(r.qoe.startup_ms.p95),
                f(r.qoe.behind_live_edge_ms.p50),
                f(r.qoe.behind_live_edge_ms.p95),
                r.qoe.start_failures,
            )
        };
        let _ = writeln!(s, "{}", row("P2P", p));
        let sp = &p.qoe.since_publish_ms;
        let _ = writeln!(
            s,
            "  published→delivered p50/p95 ms: from peers {}/{}, from CDN {}/{}, mixed {}/{}",
            f(sp[0].p50),
            f(sp[0].p95),
            f(sp[1].p50),
            f(sp[1].p95),
            f(sp[2].p50),
            f(sp[2].p95)
        );
        if let Some(b) = &self.baseline {
            let _ = writeln!(s, "{}", row("CDN-only", b));
            if let Some(v) = &self.versus_baseline {
                let _ = writeln!(s, "  CDN savings vs CDN-only {:.2}%", v.cdn_savings * 100.0);
            }
        }
        let _ = writeln!(
            s,
            "  upload utilisation {:.1}% (Jain {:.2}, top 10% send {:.0}%), connections per peer mean {:.1} p95 {}, {:.0} msgs/s ({:.1} per viewer-s), connects {} ok / {} failed / {} refused",
            p.upload.utilisation * 100.0,
            p.upload.fairness_jain,
            p.upload.top10_share * 100.0,
            p.connections_per_peer.mean.unwrap_or(0.0),
            f(p.connections_per_peer.p95),
            p.messages_per_s,
            p.messages_per_viewer_s,
            p.connections_opened,
            p.connect_failed,
            p.connect_refused
        );
        let e = &p.engine;
        let _ = writeln!(
            s,
            "  requests {} ({:.1} per delivery)",
            p.requests,
            p.requests as f64 / p.qoe.deliveries.max(1) as f64
        );
        let _ = writeln!(
            s,
            "  engine: edge fetches {}, fallbacks deadline {} / no source {} / startup {}, late {}, bans {}, verify failures {}",
            e.cdn_fetches_edge,
            e.cdn_fallback_deadline,
            e.cdn_fallback_no_source,
            e.cdn_fallback_startup,
            e.delivered_late,
            e.peers_banned,
            e.verify_failures
        );
        for r in std::iter::once(p).chain(self.baseline.iter()) {
            let sp = &r.speed;
            let _ = writeln!(
                s,
                "  {} run: {:.1} s wall, {:.1}× real time, {:.2} M events/s, peak memory {} MiB, invariants {}",
                if r.p2p { "P2P" } else { "CDN-only" },
                sp.wall_s,
                sp.sim_s_per_wall_s,
                sp.events_per_s / 1e6,
                sp.peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}")),
                if r.invariants_ok { "ok".to_string() } else { format!("FAILED: {:?}", r.invariants.failures) }
            );
        }
        s
    }
}
