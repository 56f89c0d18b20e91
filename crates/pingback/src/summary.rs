//! `GET /v1/pingback/summary`: everything the dashboard shows, in one answer.

use std::collections::BTreeMap;

use serde::Serialize;
use shoal_proto::pingback::{Decision, Figures};

use crate::agg::{Aggregate, Histogram};
use crate::protection::ScopeView;
use crate::store::{Dims, KeyFilter, Query, QueryResult, StoreError, StoreStats};
use crate::Pingback;

/// Windows in the dashboard's charts.
pub const CHART_WINDOWS: u64 = 90;
/// Decisions in the summary.
const SUMMARY_DECISIONS: usize = 50;
/// Startup times are rare events (one per session): they are shown over the sessions that
/// started in the preceding hour, not per window.
pub const STARTUP_SPAN_MS: u64 = 3_600_000;

#[derive(Clone, Debug, Serialize)]
pub struct ChartPoint {
    pub start_ms: u64,
    pub all: Figures,
    pub p2p: Figures,
    pub control: Figures,
    /// Startup p50 of sessions that started in the hour up to this window, per group.
    pub p2p_startup_p50_ms: Option<f64>,
    pub control_startup_p50_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StreamRow {
    pub stream: String,
    /// The newest complete window, all groups.
    pub current: Figures,
    /// The trailing evaluation span (`protection.eval_window_s`), all groups and per group.
    pub recent: Figures,
    pub recent_p2p: Figures,
    pub recent_control: Figures,
    /// Over the last hour, per group (startup times: one sample per session).
    pub hour_p2p: Figures,
    pub hour_control: Figures,
    /// 1 − CDN bytes per session-hour of P2P sessions / those of control sessions: the saving
    /// against the same audience playing CDN-only (`None` without control data).
    pub cdn_saving_vs_control: Option<f64>,
    /// Viewers per rendition in the newest complete window.
    pub renditions: Vec<(String, f64)>,
    /// P2P is on for new sessions of the stream (protection has not switched it off).
    pub p2p_on: bool,
    /// Locality buckets where protection has switched P2P off.
    pub localities_off: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub now_ms: u64,
    pub window_ms: u64,
    pub interval_ms: u64,
    pub settle_ms: u64,
    pub recent_s: u64,
    /// Start of the newest complete window (`None` right after start).
    pub current_start_ms: Option<u64>,
    pub holdback_percent: Option<f64>,
    pub probe_percent: f64,
    pub protection_enabled: bool,
    pub totals: Figures,
    /// All streams over the recent span, per experiment group.
    pub recent_p2p: Figures,
    pub recent_control: Figures,
    /// All streams over the last hour, per experiment group.
    pub hour_p2p: Figures,
    pub hour_control: Figures,
    pub chart: Vec<ChartPoint>,
    pub streams: Vec<StreamRow>,
    pub decisions: Vec<Decision>,
    pub protection: Vec<ScopeView>,
    pub tracker: Option<serde_json::Value>,
    pub store: StoreStats,
    pub sessions: usize,
    pub retention_s: u64,
}

fn merged(steps: Option<&BTreeMap<u64, Aggregate>>) -> Aggregate {
    let mut a = Aggregate::default();
    for s in steps.into_iter().flat_map(|m| m.values()) {
        a.merge(s);
    }
    a
}

/// Sum a result over everything but the stream: stream → group → aggregate.
fn by_stream_group(r: &QueryResult) -> BTreeMap<String, BTreeMap<String, Aggregate>> {
    let mut out: BTreeMap<String, BTreeMap<String, Aggregate>> = BTreeMap::new();
    for (k, steps) in r {
        out.entry(k.stream.clone())
            .or_default()
            .entry(k.group.clone())
            .or_default()
            .merge(&merged(Some(steps)));
    }
    out
}

fn all_groups(m: Option<&BTreeMap<String, Aggregate>>) -> Aggregate {
    let mut a = Aggregate::default();
    for g in m.into_iter().flat_map(|m| m.values()) {
        a.merge(g);
    }
    a
}

fn saving_vs_control(p2p: &Aggregate, control: &Aggregate) -> Option<f64> {
    if p2p.session_ms <= 0.0 || control.session_ms <= 0.0 || control.http_bytes <= 0.0 {
        return None;
    }
    let per_p2p = (p2p.http_bytes + p2p.manifest_bytes) / p2p.session_ms;
    let per_control = (control.http_bytes + control.manifest_bytes) / control.session_ms;
    Some(1.0 - per_p2p / per_control)
}

impl Pingback {
    /// The newest complete window per stream and group (for metrics and the summary).
    pub(crate) async fn current_by_stream(
        &self,
        start: u64,
    ) -> Result<(QueryResult, BTreeMap<String, BTreeMap<String, Aggregate>>), StoreError> {
        let w = self.cfg.window_ms();
        let q = Query {
            from_ms: start,
            to_ms: start + w,
            step_ms: w,
            filter: KeyFilter::default(),
            by: Dims { stream: true, rendition: true, group: true, ..Default::default() },
        };
        let r = self.store.query(&q).await?;
        let bsg = by_stream_group(&r);
        Ok((r, bsg))
    }

    pub async fn summary(&self, now_ms: u64) -> Result<Summary, StoreError> {
        let w = self.cfg.window_ms();
        let recent_ms = self.cfg.protection.eval_window_s.saturating_mul(1000).max(w);
        let lc = self.last_complete_start(now_ms);
        let mut chart = Vec::new();
        let mut streams = Vec::new();
        let mut totals = Figures::default();
        let (mut all_p2p, mut all_control) = (Aggregate::default(), Aggregate::default());
        let (mut hour_p2p, mut hour_control) = (Aggregate::default(), Aggregate::default());
        if let Some(lc) = lc {
            // Charts: per window, all groups and the two experiment groups.
            let from = lc.saturating_sub((CHART_WINDOWS - 1) * w);
            let q = Query {
                from_ms: from,
                to_ms: lc + w,
                step_ms: w,
                filter: KeyFilter::default(),
                by: Dims { group: true, ..Default::default() },
            };
            let r = self.store.query(&q).await?;
            let group = |name: &str| r.iter().find(|(k, _)| k.group == name).map(|(_, s)| s);
            let (p2p, control) = (group("p2p"), group("control"));
            // Startup histograms per window over the chart span and the hour before it.
            let q = Query {
                from_ms: from.saturating_sub(STARTUP_SPAN_MS),
                to_ms: lc + w,
                step_ms: w,
                filter: KeyFilter::default(),
                by: Dims { group: true, ..Default::default() },
            };
            let starts = self.store.query(&q).await?;
            let startup_of = |name: &str| -> BTreeMap<u64, Histogram> {
                starts
                    .iter()
                    .filter(|(k, _)| k.group == name)
                    .flat_map(|(_, steps)| steps.iter())
                    .filter(|(_, a)| a.startup.count() > 0)
                    .map(|(w, a)| (*w, a.startup.clone()))
                    .collect()
            };
            let (p2p_starts, control_starts) = (startup_of("p2p"), startup_of("control"));
            let rolling = |m: &BTreeMap<u64, Histogram>, end: u64| {
                let mut h = Histogram::default();
                for (_, x) in m.range(end.saturating_sub(STARTUP_SPAN_MS) + 1..=end) {
                    h.merge(x);
                }
                h.quantile(0.5)
            };
            let mut start = from;
            while start <= lc {
                let mut all = Aggregate::default();
                for steps in r.values() {
                    if let Some(a) = steps.get(&start) {
                        all.merge(a);
                    }
                }
                let pick = |g: Option<&BTreeMap<u64, Aggregate>>| {
                    g.and_then(|m| m.get(&start)).cloned().unwrap_or_default()
                };
                chart.push(ChartPoint {
                    start_ms: start,
                    all: all.figures(w),
                    p2p: pick(p2p).figures(w),
                    control: pick(control).figures(w),
                    p2p_startup_p50_ms: rolling(&p2p_starts, start),
                    control_startup_p50_ms: rolling(&control_starts, start),
                });
                start += w;
            }
            // Streams: the newest complete window and the recent span.
            let (current_raw, current) = self.current_by_stream(lc).await?;
            let q = Query {
                from_ms: (lc + w).saturating_sub(recent_ms),
                to_ms: lc + w,
                step_ms: u64::MAX / 2,
                filter: KeyFilter::default(),
                by: Dims { stream: true, group: true, ..Default::default() },
            };
            let recent = by_stream_group(&self.store.query(&q).await?);
            let q = Query { from_ms: (lc + w).saturating_sub(STARTUP_SPAN_MS), ..q };
            let hour = by_stream_group(&self.store.query(&q).await?);
            let mut all_now = Aggregate::default();
            for groups in current.values() {
                all_now.merge(&all_groups(Some(groups)));
            }
            totals = all_now.figures(w);
            let off = self.board.off_scopes();
            let names: std::collections::BTreeSet<&String> = current.keys().chain(recent.keys()).collect();
            for name in names {
                let rg = recent.get(name);
                let pick = |g: &str| rg.and_then(|m| m.get(g)).cloned().unwrap_or_default();
                let (rp, rc) = (pick("p2p"), pick("control"));
                all_p2p.merge(&rp);
                all_control.merge(&rc);
                let hg = hour.get(name);
                let hour_pick = |g: &str| hg.and_then(|m| m.get(g)).cloned().unwrap_or_default();
                let (hp, hc) = (hour_pick("p2p"), hour_pick("control"));
                hour_p2p.merge(&hp);
                hour_control.merge(&hc);
                let mut renditions: BTreeMap<String, f64> = BTreeMap::new();
                for (k, steps) in current_raw.iter().filter(|(k, _)| &k.stream == name) {
                    *renditions.entry(k.rendition.clone()).or_default() +=
                        merged(Some(steps)).session_ms / w as f64;
                }
                streams.push(StreamRow {
                    stream: name.clone(),
                    current: all_groups(current.get(name)).figures(w),
                    recent: all_groups(rg).figures(recent_ms),
                    recent_p2p: rp.figures(recent_ms),
                    recent_control: rc.figures(recent_ms),
                    hour_p2p: hp.figures(STARTUP_SPAN_MS),
                    hour_control: hc.figures(STARTUP_SPAN_MS),
                    cdn_saving_vs_control: saving_vs_control(&rp, &rc),
                    renditions: renditions.into_iter().collect(),
                    p2p_on: !self.board.is_off(name, ""),
                    localities_off: off
                        .iter()
                        .filter(|s| &s.stream == name && !s.locality.is_empty())
                        .map(|s| s.locality.clone())
                        .collect(),
                });
            }
            streams.sort_by(|a, b| {
                b.current.viewers.total_cmp(&a.current.viewers).then(a.stream.cmp(&b.stream))
            });
        }
        let (decisions, protection) = {
            let ctl = self.controller.lock().unwrap_or_else(|p| p.into_inner());
            (ctl.decisions(SUMMARY_DECISIONS), ctl.views())
        };
        Ok(Summary {
            now_ms,
            window_ms: w,
            interval_ms: self.cfg.interval_ms,
            settle_ms: self.cfg.settle_ms(),
            recent_s: recent_ms / 1000,
            current_start_ms: lc,
            holdback_percent: *self.holdback_percent.lock().unwrap_or_else(|p| p.into_inner()),
            probe_percent: self.cfg.protection.probe_percent,
            protection_enabled: self.cfg.protection.enabled,
            totals,
            recent_p2p: all_p2p.figures(recent_ms),
            recent_control: all_control.figures(recent_ms),
            hour_p2p: hour_p2p.figures(STARTUP_SPAN_MS),
            hour_control: hour_control.figures(STARTUP_SPAN_MS),
            chart,
            streams,
            decisions,
            protection,
            tracker: self.deps.tracker_health.as_ref().map(|f| f()),
            store: self.store.stats(),
            sessions: self.ledger.sessions(),
            retention_s: self.cfg.retention_s,
        })
    }
}
