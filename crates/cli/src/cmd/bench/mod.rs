//! `shoal bench ...`: benchmarks that print a report (ratios against a baseline measured in the
//! same run). One module per benchmark.

use clap::Subcommand;

pub mod peer;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub which: Bench,
}

#[derive(Subcommand)]
pub enum Bench {
    /// DataChannel throughput between two native peers over loopback, CPU per Mbit/s and
    /// memory per connected peer.
    Peer(peer::Args),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.which {
        Bench::Peer(a) => peer::run(a),
    }
}
