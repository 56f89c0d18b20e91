//! `shoal bench ...`: benchmarks that print a report (ratios against a baseline measured in the
//! same run). One module per benchmark.

use clap::Subcommand;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub which: Bench,
}

#[derive(Subcommand)]
pub enum Bench {}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.which {}
}
