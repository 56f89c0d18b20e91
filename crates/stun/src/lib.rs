//! Connectivity: Shoal's STUN Binding server and the tiny client the native SDK uses.
//!
//! - [`server`]: an RFC 8489 Binding server on UDP (XOR-MAPPED-ADDRESS, SOFTWARE, FINGERPRINT),
//!   rate-limited per source. [`server::respond`] is the protocol as a pure function; malformed
//!   packets are dropped, never answered and never fatal.
//! - [`client`]: build a Binding request and classify incoming datagrams against it, for a
//!   caller that owns a socket shared with WebRTC; plus [`client::query`] for a socket of its own.
//! - [`header`]: the 20-byte header check (RFC 7983 demultiplexing included).
//! - [`ratelimit`]: per-source token buckets with bounded memory (also used by the API role).

pub mod client;
pub mod header;
pub mod ratelimit;
pub mod server;

pub use client::{match_response, query, BindingRequest, QueryError, QueryOptions, ResponseMatch};
pub use server::{respond, StunConfig, StunServer};
