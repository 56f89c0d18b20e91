//! shoal-swarm: the Tracker's swarm state and neighbour selection, sans-IO.
//!
//! No sockets, no threads, no clock: time comes in as `now_ms: u64` with every call, and
//! randomness from a seed, so the tracker server and the swarm simulator run exactly this code
//! and the simulator is deterministic.
//!
//! - [`Swarm<T>`]: the members of one swarm (one rendition of one stream), bucketed by locality.
//!   `T` is the caller's route to a member (the tracker: the connection's outbound queue).
//!   Announce = [`Swarm::upsert`], heartbeat = [`Swarm::touch`], leave = [`Swarm::remove`],
//!   freshness = [`Swarm::expire`] once per sweep period.
//! - [`Swarm::select`]: neighbour candidates, best first, ranked by [`score`] over a bounded
//!   sample (`sample_size`, half of it from the asker's locality bucket), so an announce costs
//!   O(sample) however large the swarm is.
//! - [`score`]: same locality first, NAT-compatible, near in the stream (ahead preferred), spare
//!   upload, fewest connections. Weights are configuration ([`SelectionConfig`]).
//!
//! Canonical use (what the tracker does per announce):
//!
//! ```
//! use shoal_swarm::{sort_exclude, PeerInfo, SelectionConfig, Swarm};
//! let cfg = SelectionConfig::default();
//! let mut swarm: Swarm<()> = Swarm::new(10_000, 42);
//! let me = PeerInfo { upload_kbps: 3_000, seq: 120, ..PeerInfo::default() };
//! swarm.upsert("alice", me.clone(), (), 1_000).expect("below the member cap");
//! swarm.upsert("bob", PeerInfo { upload_kbps: 1_000, seq: 121, ..PeerInfo::default() }, (), 1_000)
//!     .expect("below the member cap");
//! let exclude = sort_exclude([]);
//! let picks = swarm.select(&cfg, "alice", &me, &exclude, 8);
//! assert_eq!(picks[0].peer_id, "bob");
//! ```

mod peer;
mod rng;
mod score;
mod swarm;

pub use peer::PeerInfo;
pub use rng::SplitMix64;
pub use score::{nat_affinity, score, SelectionConfig, Weights};
pub use shoal_proto::tracker::Nat;
pub use swarm::{sort_exclude, Selected, Swarm, SwarmFull};
