//! `shoal bench origin`: the synthetic encoder's real-time factor on one core and the origin's
//! segment-serving throughput on loopback (see `shoal_origin::bench`).

use std::time::Duration;

use shoal_origin::bench::{run, BenchOptions};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Most requests in total (the load stops at whichever bound comes first).
    #[arg(long, default_value_t = 5_000_000)]
    pub max_requests: u64,
    /// Seconds of media to encode for the real-time factor (and to serve).
    #[arg(long, default_value_t = 20.0)]
    pub encode_seconds: f64,
    /// Synthetic frame rate (default: the origin's default).
    #[arg(long)]
    pub fps: Option<u32>,
    /// Synthetic ladder `name:WxH@kbps,...` (default: the origin's default ladder).
    #[arg(long)]
    pub ladder: Option<String>,
    /// Worker threads of the in-process origin.
    #[arg(long, default_value_t = 1)]
    pub server_threads: usize,
    /// Worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Load an external origin instead: its master or media playlist URL.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Fetch BYTES-long byte ranges at chunk-aligned offsets within the first 10×BYTES of each
    /// segment instead of whole segments (0: whole segments). 16000 = one chunk.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub range: u64,
    /// With --target: skip the encoder measurement.
    #[arg(long)]
    pub skip_encoder: bool,
    /// Print the report as JSON (one line) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run_cmd(a: Args) -> anyhow::Result<()> {
    if !(a.duration.is_finite() && a.duration > 0.0 && a.duration <= 600.0) {
        anyhow::bail!("--duration must be in (0, 600] seconds");
    }
    if !(a.encode_seconds.is_finite() && a.encode_seconds > 0.0 && a.encode_seconds <= 600.0) {
        anyhow::bail!("--encode-seconds must be in (0, 600]");
    }
    let mut opts = BenchOptions {
        concurrency: a.concurrency,
        duration: Duration::from_secs_f64(a.duration),
        max_requests: a.max_requests,
        encode_seconds: a.encode_seconds,
        server_threads: a.server_threads,
        client_threads: a.client_threads,
        target: a.target,
        skip_encoder: a.skip_encoder,
        range: a.range,
        ..Default::default()
    };
    if let Some(f) = a.fps {
        opts.synthetic.fps = f;
    }
    if let Some(l) = &a.ladder {
        opts.synthetic.renditions = crate::cmd::origin::parse_ladder(l)?;
    }
    let mut check = shoal_origin::OriginConfig { synthetic: opts.synthetic.clone(), ..Default::default() };
    check.synthetic.enabled = true;
    check.validate()?;
    let report = run(&opts)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}
