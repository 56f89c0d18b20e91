//! Test harness for Shoal's integration and end-to-end tests (a dev-dependency).
//!
//! - [`Netns`]: a network namespace of the test's own, with `lo` and a veth pair inside so
//!   Chromium's WebRTC gathers candidates; run commands, processes, threads or a tokio runtime
//!   in it; deleted on drop (its processes killed first).
//! - [`Topology`]: several namespaces as hosts on LANs behind NAT routers
//!   ([`NatKind::EndpointIndependent`] or [`NatKind::Symmetric`]), for real NAT traversal.
//! - [`Proc`]: child processes (`shoal` subcommands, servers) with logs in the test's
//!   [`TestDir`], readiness lines (`SHOAL_<ROLE>_READY <url>`), stop on drop, log tails shown
//!   for failed tests.
//! - [`browser`]: headless Chromium (playwright-core) running scripts from `web/test/` inside a
//!   namespace; [`browser::play`] measures K hls.js viewers of a live stream.
//! - [`media`]: a known-good ffmpeg live HLS stream and a static file server.
//! - [`http`]: a minimal blocking HTTP GET, from inside a namespace if asked.
//! - [`redis`]: a real `redis-server` on a port of the test's choice, killed and restarted at
//!   will (cluster tests).
//!
//! Everything here needs root (network namespaces) and fails with a reason when it cannot run;
//! nothing is skipped. See docs/testing.md.
//!
//! ```no_run
//! use std::time::Duration;
//! use shoal_testkit::{browser, Netns, Proc, TestDir};
//!
//! # fn example() -> anyhow::Result<()> {
//! # let shoal = "target/debug/shoal";
//! // In crates/cli/tests: let shoal = env!("CARGO_BIN_EXE_shoal");
//! let dir = TestDir::new("my_test")?; // target/test-output/my_test/
//! let ns = Netns::new()?;
//! let mut origin = Proc::builder("origin", shoal)
//!     .args(["origin", "--synthetic", "--listen", "127.0.0.1:0"])
//!     .netns(&ns)
//!     .log_dir(dir.path())
//!     .spawn()?;
//! // SHOAL_ORIGIN_READY <base url> <master playlist url>
//! let ready = origin.wait_ready("ORIGIN", Duration::from_secs(30))?;
//! let cfg = browser::PlayConfig::new(&ready.fields[1], Duration::from_secs(20), 1);
//! let report = browser::play(&ns, &dir, "play", &cfg)?;
//! assert!(report.viewers[0].smoothness_problems().is_empty());
//! # Ok(()) }
//! # fn main() {}
//! ```

pub mod browser;
pub mod http;
pub mod media;
mod netns;
mod origin;
mod outdir;
mod process;
pub mod redis;
mod sys;
mod topology;

pub use netns::{require_netns_support, Netns, NsRuntime, VETH_ADDR};
pub use origin::SyntheticOrigin;
pub use outdir::{output_root, target_dir, workspace_root, TestDir};
pub use process::{tail, Proc, ProcBuilder, Ready};
pub use topology::{NatKind, Topology, TopologyBuilder};
