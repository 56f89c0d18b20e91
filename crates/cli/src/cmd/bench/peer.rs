//! `shoal bench peer`: DataChannel throughput between two native peers over loopback, the CPU
//! it costs per Mbit/s, and the resident memory of a connected peer. The baseline measured in
//! the same run is the stream bitrate a peer must relay (`--bitrate-kbps`): the report says how
//! many such streams one core could carry.

use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Payload to move per throughput run, MiB.
    #[arg(long, default_value_t = 64)]
    pub mib: u64,
    /// Throughput runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Connected peer pairs for the memory measurement.
    #[arg(long, default_value_t = 20)]
    pub pairs: usize,
    /// str0m send buffer per DataChannel, KiB (the SDK uses 1024).
    #[arg(long, default_value_t = 1024)]
    pub sctp_buffer_kib: usize,
    /// Stream bitrate to compare against, kbit/s.
    #[arg(long, default_value_t = 2500)]
    pub bitrate_kbps: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let total = a.mib.max(1) * 1024 * 1024;
        let buf = a.sctp_buffer_kib.max(16) * 1024;
        let mut runs = Vec::new();
        for _ in 0..a.runs.max(1) {
            runs.push(shoal_peer::bench::throughput(total, buf).await?);
        }
        runs.sort_by(|x, y| x.mbit_s.total_cmp(&y.mbit_s));
        let mid = runs[runs.len() / 2].clone();
        let mem = shoal_peer::bench::memory_per_peer(a.pairs.max(1), buf).await?;
        let streams_per_core = if mid.cpu_ms_per_mbit > 0.0 {
            1000.0 / mid.cpu_ms_per_mbit / (a.bitrate_kbps as f64 / 1000.0)
        } else {
            0.0
        };
        let report = json!({
            "throughput_runs_mbit_s": runs.iter().map(|r| (r.mbit_s * 10.0).round() / 10.0).collect::<Vec<_>>(),
            "median": mid,
            "memory": mem,
            "baseline_bitrate_kbps": a.bitrate_kbps,
            "throughput_over_bitrate": mid.mbit_s * 1000.0 / a.bitrate_kbps as f64,
            "streams_relayed_per_core": streams_per_core,
        });
        if a.json {
            println!("{report}");
        } else {
            println!("shoal bench peer — two native peers (str0m) over loopback, 16 KiB Message::Data frames");
            println!("  payload per run        {} MiB, {} runs, send buffer {} KiB", a.mib, runs.len(), a.sctp_buffer_kib);
            println!("  throughput (median)    {:.1} Mbit/s  (runs: {:?})", mid.mbit_s, report["throughput_runs_mbit_s"]);
            println!("  CPU                    {:.2} cores during transfer, {:.3} ms CPU per Mbit (both ends)", mid.cpu_cores, mid.cpu_ms_per_mbit);
            println!("  vs a {} kbit/s stream  {:.0}x its bitrate; one core relays ~{:.0} such streams", a.bitrate_kbps, report["throughput_over_bitrate"].as_f64().unwrap_or(0.0), streams_per_core);
            println!("  memory per peer        {:.1} KiB RSS ({} pairs: {:.1} → {:.1} MiB)", mem.bytes_per_peer as f64 / 1024.0, mem.pairs, mem.rss_before as f64 / 1048576.0, mem.rss_after as f64 / 1048576.0);
        }
        Ok(())
    })
}
