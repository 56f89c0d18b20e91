//! `shoal-peer`: the native client SDK of Shoal (Android, iOS, desktop, set-top boxes, servers).
//!
//! A [`Client`] joins a stream's swarm through the API, connects to the tracker, learns its
//! server-reflexive address from Shoal's STUN server on the same UDP socket that carries every
//! peer connection, opens WebRTC DataChannels with neighbours (str0m), runs
//! [`shoal_engine`], fetches from the CDN over HTTP, and serves rewritten playlists and
//! segments on `127.0.0.1:PORT` so any HLS player (ffplay, mpv, VLC, ExoPlayer, AVPlayer)
//! plays through it unchanged. Its [`ClientConfig::headless`] mode plays the stream itself in
//! real time, for servers, demos and tests.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let mut cfg = shoal_peer::ClientConfig::new("http://127.0.0.1:8080/live/demo/master.m3u8");
//! cfg.api = Some("http://127.0.0.1:8090".into());
//! let client = shoal_peer::Client::start(cfg).await?;
//! println!("play {}", client.local_url()); // hand this URL to the player
//! let report = client.stop().await;
//! println!("{:.0}% from peers", report.stats.p2p_share * 100.0);
//! # Ok(()) }
//! ```
//!
//! Failure never reaches the player: without the API, the tracker, reachable peers or a
//! usable NAT, every segment comes from the CDN and the client keeps retrying in the
//! background. Design and operations: `docs/native-sdk.md`.

pub mod bench;
mod cdn;
mod client;
pub mod config;
mod core;
mod join;
mod msg;
pub mod net;
pub mod pingback;
pub mod player;
pub mod playlist;
mod proxy;
pub mod signal;
pub mod stats;
pub mod swarm;
mod tracker;

pub use client::{Client, Report, StatsHandle};
pub use config::{ClientConfig, TEST_LIE_ENV};
pub use player::HeadlessSummary;
pub use stats::StatsSnapshot;
