//! `shoal`: one binary for every part of Shoal.

use clap::{Parser, Subcommand};

mod cmd;
mod logging;

#[derive(Parser)]
#[command(name = "shoal", version, about = "Shoal: peer-assisted live HLS over WebRTC DataChannels", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole system locally with a synthetic live stream: origin, API, tracker, STUN,
    /// pingback and a demo player page; prints the URLs to open.
    Demo(cmd::demo::Args),
    /// Run Shoal's server roles (API, tracker + signaling, STUN, pingback) in one process or
    /// a chosen subset (`--roles`).
    Serve(cmd::serve::Args),
    /// Run the Origin: a live HLS source (synthetic, ffmpeg PUT ingest, or relay of an upstream
    /// URL) that publishes signed segment hashes.
    Origin(cmd::origin::Args),
    /// Play a stream through Shoal (native SDK): prints a local URL for any HLS player, or
    /// plays it itself with `--headless`.
    Play(cmd::play::Args),
    /// Generate an Ed25519 key pair for signing segment manifests.
    Keygen(cmd::keygen::Args),
    /// Mint a viewer token (HS256 JWT) for `POST /v1/join`.
    Token(cmd::token::Args),
    /// Simulate a swarm scenario (the real engine, thousands of viewers, modelled network)
    /// against its CDN-only baseline; writes JSON and an HTML/SVG report.
    Sim(cmd::sim::Args),
    /// Benchmarks that print a report: `shoal bench <what>`.
    Bench(cmd::bench::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init();
    match cli.command {
        Command::Demo(a) => cmd::demo::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Origin(a) => cmd::origin::run(a),
        Command::Play(a) => cmd::play::run(a),
        Command::Keygen(a) => cmd::keygen::run(a),
        Command::Token(a) => cmd::token::run(a),
        Command::Sim(a) => cmd::sim::run(a),
        Command::Bench(a) => cmd::bench::run(a),
    }
}
