//! `shoal bench sim`: the big simulator scenarios (`1k`, `10k`), each with its CDN-only
//! baseline in the same run, printing the report lines and the targets next to what was
//! reached: for `1k` net offload ≥ 97 %, rebuffering no worse than CDN-only and latency behind
//! the live edge within one segment of it; for `10k` (10,000 viewers, 10 simulated minutes)
//! under 10 minutes of wall time and 8 GiB of memory on the machine it runs on.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use shoal_sim::{Options, Report, Scenario};

#[derive(clap::Args)]
pub struct Args {
    /// Directory holding the scenario files.
    #[arg(long, default_value = "sim/scenarios")]
    pub scenarios: PathBuf,
    /// Scenarios to run (file names without `.toml`), comma-separated.
    #[arg(long, default_value = "1k,10k", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Override every scenario's simulated duration (seconds); the 10k target is for 600.
    #[arg(long, value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub duration: Option<u64>,
    /// Write each report (JSON, HTML, SVG) into this directory, one subdirectory per scenario.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

const WALL_TARGET_S: f64 = 600.0;
const MEMORY_TARGET_MIB: f64 = 8.0 * 1024.0;

pub fn run_cmd(args: Args) -> Result<()> {
    ensure!(!args.only.is_empty(), "--only: at least one scenario");
    let mut lines = Vec::new();
    for name in &args.only {
        let path = args.scenarios.join(format!("{name}.toml"));
        let mut sc = Scenario::load(&path).with_context(|| format!("scenario {name}"))?;
        if let Some(d) = args.duration {
            sc.duration_s = d;
        }
        sc.validate()?;
        println!("== {name}: {} ({} simulated s)", sc.description, sc.duration_s);
        let t0 = Instant::now();
        let report = shoal_sim::run(&sc, &Options { progress: true, ..Options::default() });
        let wall = t0.elapsed().as_secs_f64();
        print!("{}", report.text());
        if let Some(dir) = &args.out {
            crate::cmd::sim::write_report(&report, &dir.join(&sc.name))?;
        }
        let line = summary(&sc, &report, wall);
        println!("{line}");
        lines.push(line);
        ensure!(
            report.p2p.invariants_ok && report.baseline.as_ref().is_none_or(|b| b.invariants_ok),
            "{name}: invariants failed"
        );
    }
    println!("\nsummary");
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// One line per scenario: speed and memory, then the QoE and offload figures against the
/// baseline and, for the scenarios the issue sets targets for, whether they were met.
fn summary(sc: &Scenario, r: &Report, wall: f64) -> String {
    let p = &r.p2p;
    let mut s = format!(
        "{}: wall {wall:.0} s (P2P run {:.0} s, {:.1}x real time, {:.2} M events/s, peak {:.0} MiB)",
        sc.name,
        p.speed.wall_s,
        p.speed.sim_s_per_wall_s,
        p.speed.events_per_s / 1e6,
        p.speed.peak_rss_mib.unwrap_or(f64::NAN),
    );
    s += &format!(
        "; offload {:.1} %, net {:.1} %, bound {:.2} %, CDN fetches/segment {:.1}",
        p.offload * 100.0,
        p.net_offload * 100.0,
        p.bound.bound * 100.0,
        p.cdn_fetches_per_segment.mean.unwrap_or(f64::NAN)
    );
    let Some(b) = &r.baseline else { return s };
    let lat = |x: &shoal_sim::RunSummary| x.qoe.behind_live_edge_ms.p50.unwrap_or(f64::NAN);
    s += &format!(
        "; rebuffer {:.3} % vs {:.3} % CDN-only, stalls {} vs {}, behind live p50 {:.1} s vs {:.1} s",
        p.qoe.rebuffer_ratio * 100.0,
        b.qoe.rebuffer_ratio * 100.0,
        p.qoe.stalls,
        b.qoe.stalls,
        lat(p) / 1e3,
        lat(b) / 1e3
    );
    match sc.name.as_str() {
        "1k" => {
            let seg = sc.stream.segment_ms as f64;
            s += &format!(
                "\n  targets: net offload >= 97 % {}, rebuffer <= CDN-only {}, latency <= CDN-only + 1 segment {}",
                met(p.net_offload >= 0.97),
                met(p.qoe.rebuffer_ratio <= b.qoe.rebuffer_ratio),
                met(lat(p) <= lat(b) + seg)
            );
        }
        "10k" => {
            let mem = p.speed.peak_rss_mib.unwrap_or(f64::INFINITY);
            s += &format!(
                "\n  targets: P2P run < {WALL_TARGET_S:.0} s wall {} ({:.0} s), < 8 GiB {} ({mem:.0} MiB)",
                met(p.speed.wall_s < WALL_TARGET_S),
                p.speed.wall_s,
                met(mem < MEMORY_TARGET_MIB)
            );
        }
        _ => {}
    }
    s
}
