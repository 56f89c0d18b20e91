//! Every Redis key and channel the cluster uses, in one place (all under `cluster.prefix`).
//!
//! | key / channel | type | lifetime |
//! |---|---|---|
//! | `{p}:node:{id}` | string (JSON record) | 2 heartbeats |
//! | `{p}:nodes` | sorted set (ids) | 1 h, members trimmed after 60 s |
//! | `{p}:assign:{stream}` | string (JSON list of tracker URLs) | `assignment_ttl_s` after the last join |
//! | `{p}:sw:{stream}:{rendition}` | pub/sub channel | while a node serves the swarm |
//! | `{p}:to:{node}` | pub/sub channel | while the node runs |
//! | `{p}:pb:w:{window}:{key}` | hash (aggregate) | `pingback.retention_s` |
//! | `{p}:pb:i:{window}` | set (keys of the window) | `pingback.retention_s` |
//! | `{p}:pb:s:{session}` | hash (duplicate ledger) | `pingback.session_ttl_s` |
//! | `{p}:pb:n:{window}` | hash (reports per pingback node) | `pingback.retention_s` |
//! | `{p}:pb:board` | string (JSON: protection state) | 10 × the window |
//! | `{p}:pb:leader` | string (node id) | 3 windows, renewed by the leader |

use shoal_proto::tracker::SwarmId;

#[derive(Clone, Debug)]
pub struct Keys {
    p: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys { p: prefix.to_owned() }
    }

    pub fn prefix(&self) -> &str {
        &self.p
    }

    pub fn node(&self, id: &str) -> String {
        format!("{}:node:{id}", self.p)
    }

    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.p)
    }

    pub fn assign(&self, stream: &str) -> String {
        format!("{}:assign:{stream}", self.p)
    }

    /// Names are `[A-Za-z0-9_.-]`, so `:` separates them unambiguously.
    pub fn swarm_channel(&self, s: &SwarmId) -> String {
        format!("{}:sw:{}:{}", self.p, s.stream, s.rendition)
    }

    pub fn swarm_of_channel(&self, channel: &str) -> Option<SwarmId> {
        let rest = channel.strip_prefix(&self.p)?.strip_prefix(":sw:")?;
        let (stream, rendition) = rest.split_once(':')?;
        let s = SwarmId::new(stream, rendition);
        s.is_valid().then_some(s)
    }

    pub fn node_channel(&self, id: &str) -> String {
        format!("{}:to:{id}", self.p)
    }

    pub fn pb_window(&self, window_ms: u64, key: &str) -> String {
        format!("{}:pb:w:{window_ms}:{key}", self.p)
    }

    pub fn pb_index(&self, window_ms: u64) -> String {
        format!("{}:pb:i:{window_ms}", self.p)
    }

    pub fn pb_session(&self, session: &str) -> String {
        format!("{}:pb:s:{session}", self.p)
    }

    pub fn pb_nodes(&self, window_ms: u64) -> String {
        format!("{}:pb:n:{window_ms}", self.p)
    }

    pub fn pb_board(&self) -> String {
        format!("{}:pb:board", self.p)
    }

    pub fn pb_leader(&self) -> String {
        format!("{}:pb:leader", self.p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_channels_round_trip() {
        let k = Keys::new("shoal");
        let s = SwarmId::new("demo", "720p");
        let c = k.swarm_channel(&s);
        assert_eq!(c, "shoal:sw:demo:720p");
        assert_eq!(k.swarm_of_channel(&c), Some(s));
        assert_eq!(k.swarm_of_channel("shoal:sw:a"), None);
        assert_eq!(k.swarm_of_channel("other:sw:a:b"), None);
        assert_eq!(k.swarm_of_channel("shoal:sw:a:b:c"), None, "invalid rendition");
    }
}
