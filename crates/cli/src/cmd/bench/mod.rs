//! `shoal bench ...`: benchmarks that print a report (ratios against a baseline measured in the
//! same run). One module per benchmark.

use clap::Subcommand;

pub mod browser;
pub mod cluster;
pub mod origin;
pub mod peer;
pub mod sim;
pub mod tracker;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub which: Bench,
}

#[derive(Subcommand)]
pub enum Bench {
    /// Real browsers on one live stream: CDN-only hls.js, Shoal's browser SDK and
    /// p2p-media-loader, each as N headless Chromium pages; offload counted at the origin.
    Browser(browser::Args),
    /// Two tracker nodes sharing swarms through Redis (announces/s, announce and relay
    /// latency for swarm members on the same node vs on different nodes) and pingback nodes
    /// aggregating reports in Redis (reports/s per node, Redis commands per report).
    Cluster(cluster::Args),
    /// The synthetic encoder's real-time factor (one core) and the origin's segment-serving
    /// throughput on loopback (req/s, Gbit/s, p50/p99).
    Origin(origin::Args),
    /// DataChannel throughput between two native peers over loopback, CPU per Mbit/s and
    /// memory per connected peer.
    Peer(peer::Args),
    /// The big simulator scenarios (1k, 10k) with their CDN-only baselines: report lines,
    /// wall time, speed and peak memory, and the targets next to what was reached.
    Sim(sim::Args),
    /// Thousands of WebSocket peers on loopback announcing and relaying offers/answers through
    /// the tracker (Shoal and WebTorrent paths; aquatic_ws too with --aquatic): announces/s,
    /// p50/p99 latency, server CPU and memory per connected peer.
    Tracker(tracker::Args),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.which {
        Bench::Browser(a) => browser::run_cmd(a),
        Bench::Cluster(a) => cluster::run_cmd(a),
        Bench::Origin(a) => origin::run_cmd(a),
        Bench::Peer(a) => peer::run(a),
        Bench::Sim(a) => sim::run_cmd(a),
        Bench::Tracker(a) => tracker::run_cmd(a),
    }
}

/// Start this binary as a bench server child (`args`), which prints `{ready} ADDR` on its first
/// stdout line once it listens; stdin stays piped so the child ends when the bench does.
fn spawn_server_child(
    args: &[&str],
    ready: &str,
    what: &str,
) -> anyhow::Result<(std::process::Child, std::net::SocketAddr)> {
    use anyhow::Context;
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting the {what}"))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .strip_prefix(ready)
        .and_then(|a| a.trim().parse().ok())
        .with_context(|| format!("{what} said {line:?}"))?;
    Ok((child, addr))
}
