//! Several headless native peers at once: what `shoal demo --peers N` adds so a single
//! browser tab already sees offload, and what the swarm tests run.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::client::{Client, Report};
use crate::config::ClientConfig;

/// Start `n` headless peers in this process, each with its own proxy and UDP socket, from one
/// template (`headless` is forced on).
pub async fn start_headless(n: usize, template: &ClientConfig) -> anyhow::Result<Vec<Client>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut cfg = template.clone();
        cfg.headless = true;
        out.push(Client::start(cfg).await?);
    }
    Ok(out)
}

/// Stop them all and collect their reports.
pub async fn stop_all(clients: Vec<Client>) -> Vec<Report> {
    let mut out = Vec::with_capacity(clients.len());
    for c in clients {
        out.push(c.stop().await);
    }
    out
}

/// Start `n` headless peers as child processes of the `shoal` binary at `shoal`
/// (`shoal play URL --headless ...`); their stdout carries `SHOAL_PLAY_READY` and the final
/// `SHOAL_PLAY_SUMMARY {json}` line. `extra` is appended to each command line.
pub fn spawn_headless_processes(
    shoal: &Path,
    n: usize,
    url: &str,
    api: Option<&str>,
    extra: &[String],
) -> std::io::Result<Vec<Child>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = Command::new(shoal);
        c.arg("play").arg(url).arg("--headless");
        if let Some(a) = api {
            c.arg("--api").arg(a);
        }
        c.args(extra).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        out.push(c.spawn()?);
    }
    Ok(out)
}
