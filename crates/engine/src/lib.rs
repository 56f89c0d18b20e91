//! `shoal-engine`: the scheduling brain every Shoal client runs — the native SDK, the browser
//! SDK (compiled to wasm) and the swarm simulator drive this same code.
//!
//! It is sans-IO: no sockets, no threads, no clock. Time comes in with every input.
//!
//! # Contract
//!
//! ```text
//! loop {
//!     engine.handle(input, now);                  // one input: player, peer, HTTP or Tick
//!     while let Some(out) = engine.poll_output() { // drain completely after every handle
//!         match out { Send, Disconnect, HttpFetch, HttpCancel, Deliver, DeliverFailed,
//!                     NeedPeers, Event }
//!     }
//!     sleep until engine.poll_timeout(), then handle(Input::Tick, now)
//! }
//! ```
//!
//! Every mutation is followed by a complete drain of [`Engine::poll_output`]; outputs are in
//! the order they must be carried out.
//!
//! # What it decides
//!
//! For every segment of the rendition being played, whether it comes from a peer or from the
//! CDN, so the CDN serves about one copy per neighbourhood and playback never stalls:
//!
//! - **Live edge.** When a new segment appears, the neighbours rank themselves by weighted
//!   rendezvous hashing (`hrw`); the best-ranked one fetches it from the CDN at once and the
//!   others ask it (or whoever announces it first) and wait. In swarms much larger than a
//!   neighbourhood a lottery thins the local winners to about `fetchers_target` at once.
//! - **Stripes.** A segment is fetched from peers in `stripes` contiguous parts, each from its
//!   own source (preferring neighbours that hold it, then ones receiving it that rank above,
//!   each stripe with its own rendezvous draw), so a new segment spreads along several trees
//!   at once and a peer whose upload is below the bitrate still relays a stripe. Requests flow
//!   up the rendezvous order; a peer never waits on the asker itself for a chunk, so two peers
//!   cannot wait on each other. Uploads are served in the order peers first asked for the
//!   segment, and a peer with half a second of upload promised answers `Busy`.
//! - **Cut-through.** A peer relays each 16 kB chunk as soon as it has verified it against the
//!   origin-signed entry, so a hop costs about one chunk time, not a segment time.
//! - **Deadlines.** Each segment's deadline is when the player's buffer runs dry. The engine
//!   switches to the CDN when the remaining bytes could only just arrive from the CDN in time
//!   (measured CDN first-byte time and throughput, plus a margin) and fetches only the
//!   missing bytes with a Range request; the losing source is cancelled.
//! - **Integrity.** Nothing from a peer reaches the player, or another peer, before it matched
//!   the signed hashes; a peer that sends bad data is dropped and banned for the session.
//! - **Start-up never waits for peers**; the timing reported for a peer delivery is what the
//!   CDN would have taken, so the player's ABR is not misled.

pub mod config;
pub mod crypto;
mod engine;
pub mod estimate;
pub mod hrw;
pub mod io;
mod peer;
mod segment;
pub mod stats;

pub use config::Config;
pub use crypto::{Crypto, RealCrypto};
pub use engine::{sibling_url, Engine, Identity};
pub use io::*;
pub use stats::Stats;
