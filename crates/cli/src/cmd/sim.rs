//! `shoal sim SCENARIO`: run a swarm scenario in the simulator (the real engine, thousands of
//! instances, modelled network, CDN and viewers), with its CDN-only baseline, and write the
//! report: `report.json`, `report.html` and `charts.svg` in `--out`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use shoal_sim::{Options, Report, Scenario};

#[derive(clap::Args)]
pub struct Args {
    /// Scenario file (TOML), e.g. `sim/scenarios/1k.toml`.
    pub scenario: PathBuf,
    /// Seed (default: the scenario's). The same seed gives the same run, bit for bit.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory for report.json, report.html and charts.svg (default: `sim-out/<scenario>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Skip the CDN-only baseline run.
    #[arg(long)]
    pub no_baseline: bool,
    /// Override the scenario's simulated duration (seconds).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Override the scenario's flash-crowd size (viewers).
    #[arg(long)]
    pub viewers: Option<u32>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut sc = Scenario::load(&args.scenario)?;
    if let Some(d) = args.duration {
        sc.duration_s = d;
    }
    if let Some(v) = args.viewers {
        sc.audience.viewers = v;
    }
    sc.validate()?;
    let opts = Options { seed: args.seed, no_baseline: args.no_baseline, progress: !args.quiet };
    let report = shoal_sim::run(&sc, &opts);
    print!("{}", report.text());
    let out = args.out.unwrap_or_else(|| PathBuf::from("sim-out").join(&sc.name));
    write_report(&report, &out)?;
    println!("report: {}", out.join("report.html").display());
    if !report.p2p.invariants_ok || report.baseline.as_ref().is_some_and(|b| !b.invariants_ok) {
        anyhow::bail!("invariants failed (see the report)");
    }
    Ok(())
}

/// Write `report.json`, `report.html` and `charts.svg` into `dir`.
pub fn write_report(report: &Report, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(dir.join("report.json"), json)?;
    std::fs::write(dir.join("report.html"), shoal_sim::chart::report_html(report))?;
    std::fs::write(dir.join("charts.svg"), shoal_sim::chart::report_svg(report))?;
    Ok(())
}
