//! Shared vocabulary of Shoal: everything that crosses a process boundary.
//!
//! - [`manifest`]: the origin-signed segment entries (size, SHA-256, per-chunk hashes, Ed25519
//!   signature) that let every client verify every byte it receives from a peer.
//! - [`ids`]: identifiers that must be computed identically by every client (segment ids).
//! - [`wire`]: the peer protocol on DataChannels (`docs/protocol.md`).
//! - [`tracker`]: tracker and signaling messages (`docs/tracker-protocol.md`).
//! - [`api`], [`ticket`]: the API's join exchange and the tickets the tracker checks (`docs/api.md`).
//! - [`pingback`]: client reports and the figures the pingback role serves (`docs/pingback.md`).
//!
//! This crate does no I/O and builds for `wasm32-unknown-unknown`.

pub mod api;
pub mod ids;
pub mod manifest;
pub mod pingback;
pub mod ticket;
pub mod tracker;
pub mod wire;

pub use ids::SegmentId;
pub use manifest::{ManifestError, SegmentEntry, SignedManifest, SigningKey, VerifyingKey};
