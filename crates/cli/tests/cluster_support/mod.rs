//! Shared parts of the cluster tests: `shoal serve` nodes joined through one real
//! `redis-server`, and reading their `/v1/cluster` status.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use shoal_testkit::{Netns, Proc, TestDir};

pub const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
/// Shared by every node: a ticket minted by one node's API is checked by another's tracker.
pub const TICKETS: &str = "k1:cluster-test-ticket-secret-0123456789";

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    /// `api,tracker,stun,pingback` or a subset.
    pub roles: String,
    /// `IP:PORT` of the shared HTTP listener (a fixed port, so a restart keeps the URLs).
    pub listen: String,
    /// `IP:PORT` for STUN when the node runs that role.
    pub stun: Option<String>,
    /// Extra `--set` values.
    pub sets: Vec<String>,
}

impl NodeSpec {
    pub fn new(name: &str, roles: &str, listen: &str) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            roles: roles.into(),
            listen: listen.into(),
            stun: None,
            sets: Vec::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }
}

/// Start `spec` (in `ns` when given) against `redis`; returns the process once it is ready.
pub fn spawn_node(
    dir: &TestDir,
    ns: Option<&Netns>,
    spec: &NodeSpec,
    redis: &str,
    generation: u32,
) -> Result<Proc> {
    let mut b = Proc::builder(&format!("{}-{generation}", spec.name), SHOAL)
        .args(["serve", "--roles", &spec.roles, "--listen", &spec.listen])
        .args(["--set", &format!("cluster.redis={redis}")])
        .args(["--set", &format!("cluster.node_id={}", spec.name)])
        .args(["--set", "cluster.heartbeat_ms=500"])
        .args(["--set", "cluster.op_timeout_ms=500"])
        .args(["--set", &format!("tickets.keys={TICKETS}")])
        .args(["--set", "auth.require_token=false"])
        .args(["--set", "api.holdback_percent=0"])
        .env("RUST_LOG", "info,shoal_cluster=debug")
        .log_dir(dir.path());
    if let Some(s) = &spec.stun {
        b = b.args(["--stun-listen", s]);
    }
    for s in &spec.sets {
        b = b.args(["--set", s]);
    }
    if let Some(ns) = ns {
        b = b.netns(ns);
    }
    let mut p = b.spawn()?;
    p.wait_ready("SERVE", Duration::from_secs(30)).with_context(|| format!("node {}", spec.name))?;
    Ok(p)
}

/// `GET {base}/v1/cluster` (from `ns` when given).
pub fn status(ns: Option<&Netns>, base: &str) -> Result<serde_json::Value> {
    let r = shoal_testkit::http::get(ns, &format!("{base}/v1/cluster"), Duration::from_secs(3))?;
    anyhow::ensure!(r.status == 200, "{base}/v1/cluster: HTTP {}", r.status);
    Ok(serde_json::from_slice(&r.body)?)
}

/// Node ids in a status answer.
pub fn node_ids(status: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = status["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_str().map(str::to_owned))
        .collect();
    v.sort();
    v
}

/// Poll `f` every 50 ms until it is true or `limit` passes; returns how long it took.
pub fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Result<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return Ok(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if f() {
        return Ok(t.elapsed());
    }
    Err(anyhow!("{what}: not within {limit:?}"))
}

/// A free TCP port on 127.0.0.1 of the current namespace.
pub fn free_port() -> Result<u16> {
    shoal_testkit::redis::free_port()
}

/// A native viewer (`shoal play --headless`) and what it printed: status lines as they came,
/// the summary at exit.
pub struct Peer {
    pub proc: Proc,
    /// (received at, status JSON), in order.
    pub statuses: Vec<(Instant, serde_json::Value)>,
    pub summary: Option<serde_json::Value>,
}

impl Peer {
    pub fn new(proc: Proc) -> Self {
        Peer { proc, statuses: Vec::new(), summary: None }
    }

    /// Take the lines printed since the last call.
    pub fn poll(&mut self) {
        for l in self.proc.take_lines() {
            if let Some(j) = l.strip_prefix("SHOAL_PLAY_STATUS ") {
                if let Ok(v) = serde_json::from_str(j) {
                    self.statuses.push((Instant::now(), v));
                }
            } else if let Some(j) = l.strip_prefix("SHOAL_PLAY_SUMMARY ") {
                self.summary = serde_json::from_str(j).ok();
            }
        }
    }

    pub fn last(&self) -> serde_json::Value {
        self.statuses.last().map(|(_, v)| v.clone()).unwrap_or(serde_json::Value::Null)
    }

    /// The tracker URL the viewer is announced on ("" when none).
    pub fn tracker(&self) -> String {
        self.last()["tracker"].as_str().unwrap_or("").to_owned()
    }
}
