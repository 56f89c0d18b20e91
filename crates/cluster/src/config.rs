//! `[cluster]` of `shoal serve`: where the shared Redis is and how this node takes part.

use serde::{Deserialize, Serialize};

/// `[cluster]`. With `redis` empty the process is a single node and nothing here is used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Redis URL (`redis://host:6379/0`, `rediss://` for TLS, `redis://:password@host`).
    /// Empty: no cluster.
    pub redis: String,
    /// This node's id in the registry (`[A-Za-z0-9_.-]`, ≤ 64). Empty: `<hostname>-<random>`,
    /// new at every start.
    pub node_id: String,
    /// Prefix of every Redis key and channel, so several clusters can share one Redis.
    pub prefix: String,
    /// Registry heartbeat, ms. A node's record lives two heartbeats: a dead node is gone from
    /// Redis within two heartbeats of its last one.
    pub heartbeat_ms: u64,
    /// Longest wait for one Redis round trip, ms. Beyond it Redis counts as unavailable and
    /// the node serves from local state until a health check succeeds again.
    pub op_timeout_ms: u64,
    /// Relative capacity of this node for new swarms (tracker weight), > 0.
    pub weight: f64,
    /// A stream keeps its tracker assignment this long after its last join, seconds.
    pub assignment_ttl_s: u64,
    /// Most messages waiting to be published to Redis; beyond it new ones are dropped (and
    /// counted), so a slow Redis never grows this node's memory.
    pub publish_queue: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis: String::new(),
            node_id: String::new(),
            prefix: "shoal".into(),
            heartbeat_ms: 1_000,
            op_timeout_ms: 1_000,
            weight: 1.0,
            assignment_ttl_s: 900,
            publish_queue: 16_384,
        }
    }
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        !self.redis.trim().is_empty()
    }

    pub fn validate(&self) -> Result<(), String> {
        if !self.node_id.is_empty() && !shoal_proto::ids::valid_name(&self.node_id) {
            return Err("cluster.node_id must be 1..=64 of [A-Za-z0-9_.-]".into());
        }
        if self.prefix.is_empty()
            || self.prefix.len() > 32
            || !self.prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err("cluster.prefix must be 1..=32 of [A-Za-z0-9_.-]".into());
        }
        if !(100..=60_000).contains(&self.heartbeat_ms) {
            return Err("cluster.heartbeat_ms must be 100..=60000".into());
        }
        if !(50..=30_000).contains(&self.op_timeout_ms) {
            return Err("cluster.op_timeout_ms must be 50..=30000".into());
        }
        if !(self.weight.is_finite() && self.weight > 0.0) {
            return Err("cluster.weight must be > 0".into());
        }
        if !(10..=7 * 24 * 3600).contains(&self.assignment_ttl_s) {
            return Err("cluster.assignment_ttl_s must be 10..=604800".into());
        }
        if !(64..=1_000_000).contains(&self.publish_queue) {
            return Err("cluster.publish_queue must be 64..=1000000".into());
        }
        if self.enabled() && !(self.redis.starts_with("redis://") || self.redis.starts_with("rediss://")) {
            return Err("cluster.redis must be a redis:// or rediss:// URL".into());
        }
        Ok(())
    }

    /// The configured node id, or a fresh one.
    pub fn resolved_node_id(&self) -> String {
        if !self.node_id.is_empty() {
            return self.node_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect())
            .filter(|h: &String| !h.is_empty())
            .unwrap_or_else(|| "node".into());
        format!("{host}-{}", hex::encode(rand::random::<[u8; 4]>()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_mistakes() {
        let d = ClusterConfig::default();
        assert_eq!(d.validate(), Ok(()));
        assert!(!d.enabled());
        let id = d.resolved_node_id();
        assert!(shoal_proto::ids::valid_name(&id), "{id}");
        assert_ne!(id, d.resolved_node_id(), "fresh per start");
        for bad in [
            ClusterConfig { node_id: "a b".into(), ..d.clone() },
            ClusterConfig { prefix: "x:y".into(), ..d.clone() },
            ClusterConfig { heartbeat_ms: 10, ..d.clone() },
            ClusterConfig { weight: 0.0, ..d.clone() },
            ClusterConfig { redis: "http://x".into(), ..d.clone() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let on = ClusterConfig { redis: "redis://127.0.0.1:6379".into(), node_id: "n1".into(), ..d };
        assert!(on.enabled() && on.validate().is_ok());
        assert_eq!(on.resolved_node_id(), "n1");
    }
}
