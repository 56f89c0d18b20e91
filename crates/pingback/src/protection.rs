//! Automatic protection: where P2P sessions stall measurably more than the control group, P2P
//! is switched off for new sessions, and back on once it has recovered (`docs/pingback.md`,
//! "The rule").
//!
//! **Measurably** means, over the trailing `eval_window_s` of a scope (a stream, or a stream's
//! locality bucket):
//!
//! 1. enough data: P2P sessions watched at least `min_p2p_watch_s` and control (holdback)
//!    sessions at least `min_control_watch_s` (watch = play + stall time);
//! 2. statistically: stall events are compared as Poisson rates per watch time with the
//!    conditional (exact binomial) test — given `n` stalls in both groups, the P2P group's
//!    count `x` is Binomial(n, T_p2p / (T_p2p + T_control)) if both stall equally often; the
//!    one-sided p-value P(X ≥ x) must be below `alpha`;
//! 3. practically: the P2P stall ratio exceeds control's by more than `margin_pp` percentage
//!    points (0.05 pp, the QoE guardrail of `perf-anchors.md`).
//!
//! Hysteresis: off after `trip_evaluations` consecutive evaluations find P2P worse; back on
//! only after `min_off_s`, and then after `recover_evaluations` consecutive evaluations with
//! enough data, no significant difference and an excess of at most `recover_margin_pp` — or
//! after `max_off_s` without enough data to decide (switched on again to measure). While off,
//! `probe_percent` of new sessions still get P2P so recovery can be seen at all.
//!
//! The controller is sans-IO: [`Controller::evaluate`] takes the time and the figures and
//! returns decisions. [`Board`] is what the API's policy reads.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::RwLock;

use shoal_proto::pingback::{Decision, Evidence};

use crate::agg::Aggregate;
use crate::config::ProtectionConfig;

/// Most decisions kept for the dashboard and `/v1/pingback/decisions`.
pub const MAX_DECISIONS: usize = 1_000;

/// A stream (`locality` empty) or one of its locality buckets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub stream: String,
    pub locality: String,
}

/// P(X ≥ x) for X ~ Binomial(n, p): exact below 200 000 trials, normal approximation above.
pub fn binomial_sf(x: u64, n: u64, p: f64) -> f64 {
    if x == 0 {
        return 1.0;
    }
    if x > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    if n > 200_000 {
        let mean = n as f64 * p;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        return 0.5 * erfc((x as f64 - 0.5 - mean) / sd / std::f64::consts::SQRT_2);
    }
    // ln pmf(x) = ln C(n, x) + x ln p + (n − x) ln(1 − p)
    let ln_c: f64 = (1..=x).map(|i| ((n - x + i) as f64 / i as f64).ln()).sum();
    let ln_pmf = ln_c + x as f64 * p.ln() + (n - x) as f64 * (1.0 - p).ln();
    let mut term = ln_pmf.exp();
    let mut sum = term;
    let odds = p / (1.0 - p);
    let mut k = x;
    while k < n {
        term *= (n - k) as f64 / (k + 1) as f64 * odds;
        sum += term;
        k += 1;
        if term < sum * 1e-16 && k as f64 > n as f64 * p {
            break;
        }
    }
    sum.min(1.0)
}

/// Complementary error function (Numerical Recipes' `erfcc`, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The figures of both groups of a scope over the evaluation span.
#[derive(Clone, Debug, Default)]
pub struct GroupsAgg {
    pub p2p: Aggregate,
    pub control: Aggregate,
}

/// What the rule sees.
pub fn evidence(cfg: &ProtectionConfig, g: &GroupsAgg) -> Evidence {
    let tp = g.p2p.watch_ms() / 1000.0;
    let tc = g.control.watch_ms() / 1000.0;
    let ratio = |a: &Aggregate| (a.watch_ms() > 0.0).then(|| a.stall_ms / a.watch_ms());
    let sufficient = tp >= cfg.min_p2p_watch_s as f64 && tc >= cfg.min_control_watch_s as f64;
    let p_value = (tp > 0.0 && tc > 0.0).then(|| {
        let xp = g.p2p.stalls.round().max(0.0) as u64;
        let xc = g.control.stalls.round().max(0.0) as u64;
        binomial_sf(xp, xp + xc, tp / (tp + tc))
    });
    Evidence {
        p2p_watch_s: tp,
        control_watch_s: tc,
        p2p_stalls: g.p2p.stalls,
        control_stalls: g.control.stalls,
        p2p_stall_ratio: ratio(&g.p2p),
        control_stall_ratio: ratio(&g.control),
        p_value,
        sufficient,
    }
}

/// Excess stall ratio of P2P over control, percentage points.
fn excess_pp(e: &Evidence) -> f64 {
    (e.p2p_stall_ratio.unwrap_or(0.0) - e.control_stall_ratio.unwrap_or(0.0)) * 100.0
}

/// "P2P sessions stall measurably more than control" (the three conditions above).
pub fn measurably_worse(cfg: &ProtectionConfig, e: &Evidence) -> bool {
    e.sufficient && e.p_value.is_some_and(|p| p < cfg.alpha) && excess_pp(e) > cfg.margin_pp
}

/// Clean enough to switch back on.
fn recovered(cfg: &ProtectionConfig, e: &Evidence) -> bool {
    e.sufficient && e.p_value.is_none_or(|p| p >= cfg.alpha) && excess_pp(e) <= cfg.recover_margin_pp
}

#[derive(Clone, Debug, Default)]
struct ScopeState {
    off: bool,
    since_ms: u64,
    trips: u32,
    clean: u32,
    last_data_ms: u64,
    last: Evidence,
}

/// Where P2P is off now; read by the policy on every join.
#[derive(Default)]
pub struct Board {
    off: RwLock<HashSet<Scope>>,
}

impl Board {
    pub fn is_off(&self, stream: &str, locality: &str) -> bool {
        let off = self.off.read().unwrap_or_else(|p| p.into_inner());
        if off.is_empty() {
            return false;
        }
        off.contains(&Scope { stream: stream.to_owned(), locality: String::new() })
            || (!locality.is_empty()
                && off.contains(&Scope { stream: stream.to_owned(), locality: locality.to_owned() }))
    }

    pub fn off_scopes(&self) -> Vec<Scope> {
        let mut v: Vec<Scope> = self.off.read().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        v.sort();
        v
    }

    fn set(&self, scopes: HashSet<Scope>) {
        *self.off.write().unwrap_or_else(|p| p.into_inner()) = scopes;
    }
}

/// A scope's protection state as the dashboard shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScopeView {
    pub stream: String,
    pub locality: String,
    pub p2p: bool,
    pub since_ms: u64,
    pub evidence: Evidence,
    pub measurably_worse: bool,
}

/// The per-scope state machines and the decision log.
pub struct Controller {
    cfg: ProtectionConfig,
    scopes: HashMap<Scope, ScopeState>,
    log: VecDeque<Decision>,
}

impl Controller {
    pub fn new(cfg: ProtectionConfig) -> Self {
        Controller { cfg, scopes: HashMap::new(), log: VecDeque::new() }
    }

    pub fn config(&self) -> &ProtectionConfig {
        &self.cfg
    }

    /// One evaluation at `now_ms` over each scope's figures; returns the decisions taken (also
    /// logged) and updates `board`.
    pub fn evaluate(
        &mut self,
        now_ms: u64,
        data: &HashMap<Scope, GroupsAgg>,
        board: &Board,
    ) -> Vec<Decision> {
        let mut decisions = Vec::new();
        if !self.cfg.enabled {
            board.set(HashSet::new());
            return decisions;
        }
        for scope in data.keys() {
            if !self.scopes.contains_key(scope) && self.scopes.len() >= self.cfg.max_scopes {
                // Make room: forget the longest-silent scope that is on.
                let victim = self
                    .scopes
                    .iter()
                    .filter(|(_, s)| !s.off)
                    .min_by_key(|(_, s)| s.last_data_ms)
                    .map(|(k, _)| k.clone());
                match victim {
                    Some(v) => {
                        self.scopes.remove(&v);
                    }
                    None => continue,
                }
            }
            self.scopes.entry(scope.clone()).or_default().last_data_ms = now_ms;
        }
        let cfg = self.cfg.clone();
        for (scope, st) in self.scopes.iter_mut() {
            let e = evidence(&cfg, &data.get(scope).cloned().unwrap_or_default());
            let worse = measurably_worse(&cfg, &e);
            let decision = if !st.off {
                st.trips = if worse { st.trips + 1 } else { 0 };
                (st.trips >= cfg.trip_evaluations).then(|| {
                    (
                        "off",
                        format!(
                            "P2P sessions stall more than the control group: stall ratio {} vs {} (+{:.3} pp > {} pp), \
                             {:.0} vs {:.0} stalls in {:.0} s vs {:.0} s watched, p = {:.2e} < {}; {} evaluations in a row",
                            pct(e.p2p_stall_ratio),
                            pct(e.control_stall_ratio),
                            excess_pp(&e),
                            cfg.margin_pp,
                            e.p2p_stalls,
                            e.control_stalls,
                            e.p2p_watch_s,
                            e.control_watch_s,
                            e.p_value.unwrap_or(1.0),
                            cfg.alpha,
                            st.trips
                        ),
                    )
                })
            } else {
                let off_for = now_ms.saturating_sub(st.since_ms);
                if off_for < cfg.min_off_s * 1000 {
                    None
                } else {
                    st.clean = if recovered(&cfg, &e) { st.clean + 1 } else { 0 };
                    if st.clean >= cfg.recover_evaluations {
                        Some((
                            "on",
                            format!(
                                "recovered: stall ratio {} vs control {} (+{:.3} pp <= {} pp), p = {:.2}; {} clean evaluations",
                                pct(e.p2p_stall_ratio),
                                pct(e.control_stall_ratio),
                                excess_pp(&e),
                                cfg.recover_margin_pp,
                                e.p_value.unwrap_or(1.0),
                                st.clean
                            ),
                        ))
                    } else if off_for >= cfg.max_off_s * 1000 && !e.sufficient {
                        Some((
                            "on",
                            format!(
                                "retry: off for {} s without enough data to confirm recovery ({:.0} s P2P, {:.0} s control watched)",
                                off_for / 1000,
                                e.p2p_watch_s,
                                e.control_watch_s
                            ),
                        ))
                    } else {
                        None
                    }
                }
            };
            if let Some((action, reason)) = decision {
                st.off = action == "off";
                st.since_ms = now_ms;
                st.trips = 0;
                st.clean = 0;
                let d = Decision {
                    at_ms: now_ms,
                    stream: scope.stream.clone(),
                    locality: scope.locality.clone(),
                    action: action.to_owned(),
                    reason,
                    evidence: e.clone(),
                };
                tracing::warn!(
                    stream = %d.stream,
                    locality = %d.locality,
                    action = %d.action,
                    "pingback protection: {}",
                    d.reason
                );
                metrics::counter!("shoal_pingback_protection_decisions_total", "action" => action)
                    .increment(1);
                decisions.push(d);
            }
            st.last = e;
        }
        // Scopes that are on and have had no data for an hour are forgotten.
        self.scopes.retain(|_, s| s.off || now_ms.saturating_sub(s.last_data_ms) < 3_600_000);
        for d in &decisions {
            if self.log.len() >= MAX_DECISIONS {
                self.log.pop_front();
            }
            self.log.push_back(d.clone());
        }
        board.set(self.scopes.iter().filter(|(_, s)| s.off).map(|(k, _)| k.clone()).collect());
        decisions
    }

    /// Newest first.
    pub fn decisions(&self, limit: usize) -> Vec<Decision> {
        self.log.iter().rev().take(limit).cloned().collect()
    }

    pub fn views(&self) -> Vec<ScopeView> {
        let mut v: Vec<ScopeView> = self
            .scopes
            .iter()
            .map(|(k, s)| ScopeView {
                stream: k.stream.clone(),
                locality: k.locality.clone(),
                p2p: !s.off,
                since_ms: s.since_ms,
                measurably_worse: measurably_worse(&self.cfg, &s.last),
                evidence: s.last.clone(),
            })
            .collect();
        v.sort_by(|a, b| (&a.stream, &a.locality).cmp(&(&b.stream, &b.locality)));
        v
    }
}

fn pct(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".into(), |r| format!("{:.3} %", r * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(watch_s: f64, stall_s: f64, stalls: f64) -> Aggregate {
        Aggregate {
            play_ms: (watch_s - stall_s) * 1000.0,
            stall_ms: stall_s * 1000.0,
            stalls,
            ..Default::default()
        }
    }

    fn cfg() -> ProtectionConfig {
        ProtectionConfig {
            min_p2p_watch_s: 100,
            min_control_watch_s: 100,
            trip_evaluations: 2,
            recover_evaluations: 2,
            min_off_s: 30,
            max_off_s: 100,
            ..Default::default()
        }
    }

    #[test]
    fn binomial_tail_matches_known_values() {
        // P(X >= 8 | 10, 0.5) = 56/1024
        assert!((binomial_sf(8, 10, 0.5) - 56.0 / 1024.0).abs() < 1e-12);
        assert!((binomial_sf(1, 10, 0.5) - 1023.0 / 1024.0).abs() < 1e-12);
        assert_eq!(binomial_sf(0, 10, 0.3), 1.0);
        assert_eq!(binomial_sf(11, 10, 0.3), 0.0);
        assert!((binomial_sf(30, 30, 0.9) - 0.9f64.powi(30)).abs() < 1e-12);
        // Normal approximation agrees with the exact sum near the switch-over.
        let exact = binomial_sf(100_600, 200_000, 0.5);
        let approx = binomial_sf(201_200, 400_000, 0.5);
        assert!(exact > 0.001 && approx > 0.0 && approx < exact, "{exact} {approx}");
        assert!((erfc(0.0) - 1.0).abs() < 1e-7 && (erfc(1.0) - 0.157_299_2).abs() < 1e-6);
    }

    #[test]
    fn the_rule_needs_data_significance_and_size() {
        let c = cfg();
        // Far worse but too little control watch time: not measurable.
        let e = evidence(&c, &GroupsAgg { p2p: group(1000.0, 50.0, 40.0), control: group(50.0, 0.0, 0.0) });
        assert!(!e.sufficient && !measurably_worse(&c, &e));
        // Enough data, clearly worse.
        let e = evidence(&c, &GroupsAgg { p2p: group(1000.0, 50.0, 40.0), control: group(1000.0, 1.0, 2.0) });
        assert!(e.sufficient && e.p_value.is_some_and(|p| p < 1e-6), "{e:?}");
        assert!(measurably_worse(&c, &e));
        // Same stall rate: not worse.
        let e = evidence(&c, &GroupsAgg { p2p: group(1000.0, 5.0, 10.0), control: group(1000.0, 5.0, 10.0) });
        assert!(!measurably_worse(&c, &e) && e.p_value.is_some_and(|p| p > 0.4));
        // Significant but tiny (below the 0.05 pp margin): not worse.
        let e = evidence(
            &c,
            &GroupsAgg { p2p: group(100_000.0, 40.0, 200.0), control: group(100_000.0, 0.1, 100.0) },
        );
        assert!(e.p_value.is_some_and(|p| p < 0.01) && !measurably_worse(&c, &e), "{e:?}");
    }

    #[test]
    fn controller_switches_off_and_on_with_hysteresis() {
        let c = cfg();
        let board = Board::default();
        let mut ctl = Controller::new(c);
        let scope = Scope { stream: "demo".into(), locality: String::new() };
        let bad = HashMap::from([(
            scope.clone(),
            GroupsAgg { p2p: group(1000.0, 50.0, 40.0), control: group(1000.0, 1.0, 2.0) },
        )]);
        let good = HashMap::from([(
            scope.clone(),
            GroupsAgg { p2p: group(1000.0, 1.0, 2.0), control: group(1000.0, 1.0, 2.0) },
        )]);
        assert!(ctl.evaluate(0, &bad, &board).is_empty(), "one bad evaluation is not enough");
        assert!(ctl.evaluate(10_000, &good, &board).is_empty());
        assert!(ctl.evaluate(20_000, &bad, &board).is_empty());
        let d = ctl.evaluate(30_000, &bad, &board);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].action, "off");
        assert!(board.is_off("demo", "") && board.is_off("demo", "isp-a") && !board.is_off("other", ""));
        // Good data, but min_off_s (30 s) has not passed.
        assert!(ctl.evaluate(40_000, &good, &board).is_empty());
        assert!(ctl.evaluate(59_000, &good, &board).is_empty());
        assert!(ctl.evaluate(60_000, &good, &board).is_empty(), "first clean evaluation");
        let d = ctl.evaluate(70_000, &good, &board);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].action, "on");
        assert!(d[0].reason.starts_with("recovered"), "{}", d[0].reason);
        assert!(!board.is_off("demo", ""));
        assert_eq!(ctl.decisions(10).len(), 2);
        assert_eq!(ctl.decisions(10)[0].action, "on", "newest first");
        // Off again, then no data at all: back on after max_off_s to measure again.
        ctl.evaluate(80_000, &bad, &board);
        assert_eq!(ctl.evaluate(90_000, &bad, &board).len(), 1);
        let none = HashMap::new();
        assert!(ctl.evaluate(150_000, &none, &board).is_empty());
        let d = ctl.evaluate(190_000, &none, &board);
        assert_eq!(d.len(), 1);
        assert!(d[0].reason.starts_with("retry"), "{}", d[0].reason);
    }

    #[test]
    fn locality_scopes_are_separate() {
        let c = cfg();
        let board = Board::default();
        let mut ctl = Controller::new(c);
        let a = Scope { stream: "demo".into(), locality: "isp-a".into() };
        let bad = HashMap::from([(
            a,
            GroupsAgg { p2p: group(1000.0, 50.0, 40.0), control: group(1000.0, 1.0, 2.0) },
        )]);
        ctl.evaluate(0, &bad, &board);
        ctl.evaluate(10_000, &bad, &board);
        assert!(board.is_off("demo", "isp-a"));
        assert!(!board.is_off("demo", "isp-b") && !board.is_off("demo", ""));
        assert_eq!(board.off_scopes().len(), 1);
    }
}
