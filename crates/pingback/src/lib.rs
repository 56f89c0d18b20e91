//! The pingback role: every client reports what it experiences (`POST /v1/pingback`, every
//! 10 s), the role aggregates the reports into 10-second windows per stream, rendition,
//! locality bucket, platform and experiment group, answers queries (`/v1/pingback/windows`,
//! `/summary`, `/decisions`), serves the dashboard (`/dashboard`), exports Prometheus gauges,
//! and drives the API's P2P decision: a holdback control group and automatic protection that
//! switches P2P off where it makes playback measurably worse (`docs/pingback.md`).
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! let keys = shoal_proto::ticket::HmacKeys::parse(&["k1:the-api-ticket-secret-0123"], "")?;
//! let deps = shoal_pingback::Deps { tickets: Some(keys), ..Default::default() };
//! let pb = Arc::new(shoal_pingback::Pingback::new(Default::default(), deps)?);
//! let app = pb.router(); // mount next to the API
//! let policy = pb.policy(true, 5.0); // `Api::with_policy(policy)`
//! tokio::spawn(pb.clone().run(std::future::pending()));
//! # let _ = (app, policy); Ok(()) }
//! ```
//!
//! State sits behind two traits, [`store::Store`] (windows) and [`store::Ledger`] (duplicate
//! detection), in memory today; a cluster of stateless pingback nodes plugs a Redis-backed pair
//! in through [`Pingback::with_backends`]. The protection controller runs where `run` runs
//! (in a cluster: one elected node), and the [`protection::Board`] it fills is what the policy
//! reads on every join.

pub mod agg;
pub mod config;
mod dashboard;
mod http;
mod metrics_export;
pub mod policy;
pub mod protection;
pub mod store;
mod summary;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shoal_proto::pingback::Group;
use shoal_proto::ticket::HmacKeys;

pub use config::{PingbackConfig, ProtectionConfig};
pub use policy::{LocalityFn, PingbackPolicy};
pub use shoal_proto::pingback::PINGBACK_PATH;

use crate::protection::{Board, Controller, GroupsAgg, Scope};
use crate::store::{Dims, KeyFilter, Ledger, MemoryLedger, MemoryStore, Query, Store};

/// Tracker figures for the dashboard's swarm health panel (any JSON object).
pub type HealthFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What the role needs from the rest of the process.
#[derive(Clone, Default)]
pub struct Deps {
    /// Tracker-ticket keys: reports carry their join's ticket. Required when
    /// `require_ticket` is on.
    pub tickets: Option<HmacKeys>,
    /// Client address → locality label (the tracker's IP table), used for reports and by
    /// the policy. Without it the label the tracker gave the client (in the report) is used.
    pub locality: Option<LocalityFn>,
    /// Tracker health for the dashboard (connections, swarms, peers).
    pub tracker_health: Option<HealthFn>,
}

/// The role's state; share it with `Arc`.
pub struct Pingback {
    cfg: PingbackConfig,
    store: Arc<dyn Store>,
    ledger: Arc<dyn Ledger>,
    controller: Mutex<Controller>,
    board: Arc<Board>,
    deps: Deps,
    /// The policy's holdback share as configured (shown on the dashboard).
    holdback_percent: Mutex<Option<f64>>,
    exported: Mutex<metrics_export::Exported>,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Pingback {
    /// With the in-memory store and ledger.
    pub fn new(cfg: PingbackConfig, deps: Deps) -> anyhow::Result<Self> {
        let store = Arc::new(MemoryStore::new(
            cfg.retention_s.saturating_mul(1000),
            cfg.max_keys_per_window,
            cfg.max_aggregates,
        ));
        let ledger = Arc::new(MemoryLedger::new(cfg.session_ttl_s.saturating_mul(1000), cfg.max_sessions));
        Self::with_backends(cfg, deps, store, ledger)
    }

    /// With other backends (a shared store for a cluster).
    pub fn with_backends(
        cfg: PingbackConfig,
        deps: Deps,
        store: Arc<dyn Store>,
        ledger: Arc<dyn Ledger>,
    ) -> anyhow::Result<Self> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        if cfg.require_ticket && deps.tickets.is_none() {
            anyhow::bail!(
                "pingback.require_ticket is on but no ticket keys are known: set tickets.keys (the same \
                 as the API nodes') or pingback.require_ticket = false"
            );
        }
        Ok(Pingback {
            controller: Mutex::new(Controller::new(cfg.protection.clone())),
            cfg,
            store,
            ledger,
            board: Arc::new(Board::default()),
            deps,
            holdback_percent: Mutex::new(None),
            exported: Mutex::new(Default::default()),
        })
    }

    pub fn config(&self) -> &PingbackConfig {
        &self.cfg
    }

    pub fn board(&self) -> Arc<Board> {
        self.board.clone()
    }

    /// The API's P2P policy: `enabled` (`api.p2p`), the holdback share (`api.holdback_percent`)
    /// and this role's protection decisions.
    pub fn policy(&self, enabled: bool, holdback_percent: f64) -> Arc<dyn shoal_api::P2pPolicy> {
        *self.holdback_percent.lock().unwrap_or_else(|p| p.into_inner()) = Some(holdback_percent);
        Arc::new(PingbackPolicy {
            enabled,
            holdback_percent,
            probe_percent: self.cfg.protection.probe_percent,
            board: self.board.clone(),
            locality: self.deps.locality.clone(),
        })
    }

    /// `POST /v1/pingback`, the queries and (with `dashboard`) `/dashboard`.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        http::router(self.clone())
    }

    /// The locality label of a client: the IP table's, else what the client said.
    pub(crate) fn locality_of(&self, ip: Option<IpAddr>, reported: &str) -> String {
        if let (Some(f), Some(ip)) = (&self.deps.locality, ip) {
            let l = f(ip);
            if !l.is_empty() {
                return l;
            }
        }
        reported.to_owned()
    }

    /// Background work until `stop` resolves: once per window, prune, sweep, evaluate the
    /// protection rule and refresh the Prometheus gauges.
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let period = Duration::from_millis(self.cfg.window_ms().clamp(1_000, 10_000));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => self.tick(now_ms()).await,
            }
        }
    }

    /// One round of background work at `now_ms` (tests call it directly).
    pub async fn tick(&self, now_ms: u64) {
        self.store.prune(now_ms).await;
        self.ledger.sweep(now_ms).await;
        self.evaluate_protection(now_ms).await;
        self.export_metrics(now_ms).await;
    }

    async fn evaluate_protection(&self, now_ms: u64) {
        let w = self.cfg.window_ms();
        let eval_ms = self.cfg.protection.eval_window_s.saturating_mul(1000);
        let to = now_ms - now_ms % w + w;
        let q = Query {
            from_ms: to.saturating_sub(eval_ms),
            to_ms: to,
            step_ms: u64::MAX / 2,
            filter: KeyFilter::default(),
            by: Dims { stream: true, locality: true, group: true, ..Default::default() },
        };
        let Ok(result) = self.store.query(&q).await else {
            tracing::warn!("pingback: store unavailable, protection not evaluated");
            return;
        };
        let mut data: HashMap<Scope, GroupsAgg> = HashMap::new();
        for (key, steps) in result {
            let group = match Group::parse(&key.group) {
                Some(Group::P2p) => Group::P2p,
                Some(Group::Control) => Group::Control,
                _ => continue,
            };
            let mut scopes = vec![Scope { stream: key.stream.clone(), locality: String::new() }];
            if self.cfg.protection.localities && !key.locality.is_empty() && key.locality != store::OTHER {
                scopes.push(Scope { stream: key.stream.clone(), locality: key.locality.clone() });
            }
            if key.stream == store::OTHER {
                continue;
            }
            for scope in scopes {
                let g = data.entry(scope).or_default();
                let target = if group == Group::P2p { &mut g.p2p } else { &mut g.control };
                for a in steps.values() {
                    target.merge(a);
                }
            }
        }
        let mut ctl = self.controller.lock().unwrap_or_else(|p| p.into_inner());
        ctl.evaluate(now_ms, &data, &self.board);
    }

    /// Start of the newest window every report has arrived for.
    pub(crate) fn last_complete_start(&self, now_ms: u64) -> Option<u64> {
        let w = self.cfg.window_ms();
        let settled = now_ms.checked_sub(self.cfg.settle_ms())?;
        (settled - settled % w).checked_sub(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_required_unless_switched_off() {
        let e = Pingback::new(PingbackConfig::default(), Deps::default()).err().expect("no ticket keys");
        assert!(e.to_string().contains("tickets.keys"), "{e}");
        let cfg = PingbackConfig { require_ticket: false, ..Default::default() };
        assert!(Pingback::new(cfg, Deps::default()).is_ok());
        let bad = PingbackConfig { require_ticket: false, window_s: 0, ..Default::default() };
        assert!(Pingback::new(bad, Deps::default()).is_err(), "the config is validated");
    }

    #[test]
    fn complete_windows_wait_one_interval_and_transit() {
        let cfg = PingbackConfig { require_ticket: false, ..Default::default() };
        let pb = Pingback::new(cfg, Deps::default()).expect("pingback");
        // Window [100 s, 110 s) is complete once 110 s + 10 s interval + 2 s have passed.
        assert_eq!(pb.last_complete_start(122_000), Some(100_000));
        assert_eq!(pb.last_complete_start(121_999), Some(90_000));
        assert_eq!(pb.last_complete_start(5_000), None);
    }
}
