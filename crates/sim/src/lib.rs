//! `shoal-sim`: the swarm simulator. It runs **the same `shoal-engine` code the SDKs ship**,
//! thousands of instances at once, against a modelled network, CDN and audience —
//! deterministic, faster than real time, and honest about the bound.
//!
//! - [`world`]: the discrete-event loop (one priority queue of timed events in virtual time)
//!   driving one engine per viewer, the live [`origin`] and CDN, the [`net`]work model, the
//!   tracker's own neighbour selection (`shoal-swarm`, the code the tracker server runs) and an
//!   hls.js-like [`player`] per viewer.
//! - [`audience`]: who watches (flash crowd, Poisson arrivals, heavy-tailed sessions, links,
//!   NATs, consume-only and lying viewers), drawn once so the P2P run and its CDN-only baseline
//!   see the same people.
//! - [`crypto`]: memoised SHA-256 / Ed25519 so 10,000 engines do not hash the same bytes
//!   10,000 times.
//! - [`report`], [`chart`]: JSON, text and a self-contained HTML/SVG report.
//!
//! A seed makes every run reproducible bit for bit: no threads, no wall clock in the model,
//! deterministic hashers, every random draw from a seeded stream.
//!
//! ```no_run
//! let sc = shoal_sim::Scenario::load("sim/scenarios/small.toml".as_ref()).unwrap();
//! let report = shoal_sim::run(&sc, &shoal_sim::Options::default());
//! println!("{}", report.text());
//! ```

pub mod audience;
pub mod chart;
pub mod crypto;
pub mod fxhash;
pub mod metrics;
pub mod net;
pub mod origin;
pub mod player;
pub mod queue;
pub mod recv;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod world;

pub use report::{Report, RunSummary};
pub use scenario::Scenario;

/// How to run a scenario.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Skip the CDN-only baseline.
    pub no_baseline: bool,
    /// Print a progress line to stderr.
    pub progress: bool,
}

/// Run a scenario with P2P on, then (unless told not to) the same audience with P2P off.
pub fn run(sc: &Scenario, opts: &Options) -> Report {
    let seed = opts.seed.unwrap_or(sc.seed);
    let (p2p, baseline) = run_both(sc, seed, opts);
    Report::new(sc, seed, p2p, baseline)
}

fn run_both(sc: &Scenario, seed: u64, opts: &Options) -> (RunSummary, Option<RunSummary>) {
    let seg_us = sc.stream.segment_ms as u64 * 1_000;
    let start_us = seg_us * (sc.stream.playlist_window as u64 + 1);
    let end_us = start_us + sc.duration_s * 1_000_000;
    let viewers = audience::draw(sc, seed, start_us, end_us);
    let label = |what: &str| opts.progress.then(|| format!("[{} {what}]", sc.name));
    let out = world::World::new(sc, &viewers, seed, true, label("p2p")).run();
    let p2p = report::summarize(sc, &out);
    drop(out);
    let baseline = (!opts.no_baseline).then(|| {
        let out = world::World::new(sc, &viewers, seed, false, label("cdn-only")).run();
        report::summarize(sc, &out)
    });
    (p2p, baseline)
}
