//! What the swarm knows of one member, from its last announce.

use std::sync::Arc;

use shoal_proto::tracker::Nat;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// ISP / region label ("" = unknown). Shared: a tracker has few distinct labels.
    pub locality: Arc<str>,
    pub nat: Nat,
    /// Newest media sequence the peer holds or plays (0 = unknown).
    pub seq: u64,
    pub buffer_ms: u32,
    /// Upload capacity estimate; 0 = consume-only.
    pub upload_kbps: u32,
    /// DataChannels the peer has open now.
    pub connections: u32,
}

impl Default for PeerInfo {
    fn default() -> Self {
        Self {
            locality: Arc::from(""),
            nat: Nat::Unknown,
            seq: 0,
            buffer_ms: 0,
            upload_kbps: 0,
            connections: 0,
        }
    }
}
