//! Run a scenario without the `shoal` binary: `cargo run -p shoal-sim --release --example sim --
//! sim/scenarios/small.toml [seed] [--no-baseline]` (prints the text report and the JSON path).

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or_else(|| anyhow::anyhow!("usage: sim SCENARIO [SEED] [--no-baseline]"))?;
    let mut sc = shoal_sim::Scenario::load(path.as_ref())?;
    let seed = args.get(2).and_then(|s| s.parse().ok());
    if let Ok(d) = std::env::var("SIM_DURATION") {
        sc.duration_s = d.parse()?;
    }
    let no_baseline = args.iter().any(|a| a == "--no-baseline");
    let report = shoal_sim::run(&sc, &shoal_sim::Options { seed, no_baseline, progress: true });
    print!("{}", report.text());
    let out = std::path::PathBuf::from("/tmp/sim-out").join(&sc.name);
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    std::fs::write(out.join("report.html"), shoal_sim::chart::report_html(&report))?;
    std::fs::write(out.join("charts.svg"), shoal_sim::chart::report_svg(&report))?;
    println!("{}", out.display());
    Ok(())
}
