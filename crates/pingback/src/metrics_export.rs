//! Prometheus gauges of the newest complete window, refreshed once per window. Label sets are
//! bounded: the [`MAX_STREAMS`] streams with the most viewers keep their name, the rest are
//! summed under `stream="_other"`; a label set that disappears is set to 0 once, then dropped
//! from the refresh list.

use std::collections::{BTreeMap, BTreeSet};

use crate::agg::Aggregate;
use crate::store::OTHER;
use crate::Pingback;

/// Streams with their own label values.
pub const MAX_STREAMS: usize = 50;

/// Label sets set last time, to zero the ones that disappear.
#[derive(Default)]
pub struct Exported {
    stream: BTreeSet<String>,
    stream_group: BTreeSet<(String, String)>,
    protection: BTreeSet<(String, String)>,
}

impl Pingback {
    pub(crate) async fn export_metrics(&self, now_ms: u64) {
        let st = self.store.stats();
        metrics::gauge!("shoal_pingback_sessions").set(self.ledger.sessions() as f64);
        metrics::gauge!("shoal_pingback_windows").set(st.windows as f64);
        metrics::gauge!("shoal_pingback_aggregates").set(st.aggregates as f64);
        metrics::gauge!("shoal_pingback_keys_folded").set(st.keys_folded as f64);
        metrics::gauge!("shoal_pingback_windows_evicted").set(st.windows_evicted as f64);

        let w = self.cfg.window_ms();
        let mut by_stream: BTreeMap<String, BTreeMap<String, Aggregate>> = BTreeMap::new();
        if let Some(lc) = self.last_complete_start(now_ms) {
            if let Ok((_, current)) = self.current_by_stream(lc).await {
                let mut ranked: Vec<(String, f64)> = current
                    .iter()
                    .map(|(s, g)| (s.clone(), g.values().map(|a| a.session_ms).sum::<f64>()))
                    .collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let keep: BTreeSet<String> = ranked.into_iter().take(MAX_STREAMS).map(|(s, _)| s).collect();
                for (stream, groups) in current {
                    let name = if keep.contains(&stream) { stream } else { OTHER.to_owned() };
                    let slot = by_stream.entry(name).or_default();
                    for (g, a) in groups {
                        slot.entry(g).or_default().merge(&a);
                    }
                }
            }
        }
        let mut ex = self.exported.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen_stream = BTreeSet::new();
        let mut seen_sg = BTreeSet::new();
        for (stream, groups) in &by_stream {
            let mut all = Aggregate::default();
            for a in groups.values() {
                all.merge(a);
            }
            let f = all.figures(w);
            let s = stream.clone();
            metrics::gauge!("shoal_pingback_http_mbps", "stream" => s.clone()).set(f.http_mbps);
            metrics::gauge!("shoal_pingback_p2p_mbps", "stream" => s.clone()).set(f.p2p_mbps);
            metrics::gauge!("shoal_pingback_upload_mbps", "stream" => s.clone()).set(f.upload_mbps);
            metrics::gauge!("shoal_pingback_offload", "stream" => s.clone()).set(f.offload.unwrap_or(0.0));
            metrics::gauge!("shoal_pingback_net_offload", "stream" => s.clone())
                .set(f.net_offload.unwrap_or(0.0));
            metrics::gauge!("shoal_pingback_peers_per_viewer", "stream" => s.clone())
                .set(f.peers_per_viewer.unwrap_or(0.0));
            metrics::gauge!("shoal_pingback_connect_success", "stream" => s.clone())
                .set(f.connect_success.unwrap_or(0.0));
            metrics::gauge!("shoal_pingback_integrity_failures", "stream" => s.clone())
                .set(f.integrity_failures);
            metrics::gauge!("shoal_pingback_latency_p50_seconds", "stream" => s.clone())
                .set(f.latency_p50_ms.unwrap_or(0.0) / 1000.0);
            seen_stream.insert(s);
            for (g, a) in groups {
                let f = a.figures(w);
                let l = [("stream", stream.clone()), ("group", g.clone())];
                metrics::gauge!("shoal_pingback_viewers", &l).set(f.viewers);
                metrics::gauge!("shoal_pingback_stall_ratio", &l).set(f.stall_ratio.unwrap_or(0.0));
                metrics::gauge!("shoal_pingback_startup_p50_seconds", &l)
                    .set(f.startup_p50_ms.unwrap_or(0.0) / 1000.0);
                metrics::gauge!("shoal_pingback_startup_p95_seconds", &l)
                    .set(f.startup_p95_ms.unwrap_or(0.0) / 1000.0);
                seen_sg.insert((stream.clone(), g.clone()));
            }
        }
        for s in ex.stream.difference(&seen_stream) {
            for name in [
                "shoal_pingback_http_mbps",
                "shoal_pingback_p2p_mbps",
                "shoal_pingback_upload_mbps",
                "shoal_pingback_offload",
                "shoal_pingback_net_offload",
                "shoal_pingback_peers_per_viewer",
                "shoal_pingback_connect_success",
                "shoal_pingback_integrity_failures",
                "shoal_pingback_latency_p50_seconds",
            ] {
                metrics::gauge!(name, "stream" => s.clone()).set(0.0);
            }
        }
        for (s, g) in ex.stream_group.difference(&seen_sg) {
            let l = [("stream", s.clone()), ("group", g.clone())];
            for name in [
                "shoal_pingback_viewers",
                "shoal_pingback_stall_ratio",
                "shoal_pingback_startup_p50_seconds",
                "shoal_pingback_startup_p95_seconds",
            ] {
                metrics::gauge!(name, &l).set(0.0);
            }
        }
        ex.stream = seen_stream;
        ex.stream_group = seen_sg;

        let off: BTreeSet<(String, String)> =
            self.board.off_scopes().into_iter().map(|s| (s.stream, s.locality)).collect();
        for (s, l) in off.iter().chain(ex.protection.difference(&off)) {
            let v = if off.contains(&(s.clone(), l.clone())) { 1.0 } else { 0.0 };
            metrics::gauge!("shoal_pingback_protection_off", "stream" => s.clone(), "locality" => l.clone())
                .set(v);
        }
        ex.protection = off;
    }
}
