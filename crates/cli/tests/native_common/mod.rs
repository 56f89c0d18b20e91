//! Shared by the native-peer end-to-end tests: start an origin (synthetic stream) and the
//! server roles (API, tracker, STUN), then native peers with `shoal play --headless`, and read
//! their final JSON summaries.

#![allow(dead_code)]

use std::time::Duration;

use anyhow::{Context, Result};
use shoal_testkit::{Netns, Proc, SyntheticOrigin};

pub const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

pub struct Stack {
    pub origin: Proc,
    pub serve: Proc,
    /// Master playlist URL on the origin (the CDN here).
    pub master: String,
    pub api: String,
    pub origin_key: String,
}

/// Origin and servers bound to `ip` (inside `ns` if given). One light rendition keeps the
/// synthetic encoder's share of the two cores small.
pub fn start_stack(dir: &std::path::Path, ns: Option<&Netns>, ip: &str, ladder: &str) -> Result<Stack> {
    let SyntheticOrigin { proc: origin, key: origin_key, url: base, master } =
        SyntheticOrigin::start(SHOAL, dir, ns, &format!("{ip}:0"), ladder)?;
    let mut b = Proc::builder("serve", SHOAL)
        .env("SHOAL_API_HOLDBACK_PERCENT", "0") // every viewer in the swarm: no control group
        .args(["serve", "--listen", &format!("{ip}:0"), "--stun-listen", &format!("{ip}:0")])
        .args(["--set", "auth.require_token=false"])
        .args(["--set", &format!("api.origin_public_key={origin_key}")])
        .args(["--set", &format!("api.cdn=[\"{base}/live/{{stream}}/\"]")])
        .log_dir(dir);
    if let Some(ns) = ns {
        b = b.netns(ns);
    }
    let mut serve = b.spawn()?;
    let ready = serve.wait_ready("SERVE", Duration::from_secs(60))?;
    Ok(Stack { origin, serve, master, api: ready.url.trim_end_matches('/').to_owned(), origin_key })
}

/// A headless native peer for `secs` seconds.
pub fn play(
    dir: &std::path::Path,
    name: &str,
    ns: Option<&Netns>,
    master: &str,
    api: Option<&str>,
    secs: u64,
    extra: &[&str],
) -> Result<Proc> {
    let mut b = Proc::builder(name, SHOAL)
        .args(["play", master, "--headless", "--duration", &secs.to_string(), "--status-every", "5"])
        .args(extra)
        .env("RUST_LOG", std::env::var("SHOAL_TEST_PEER_LOG").unwrap_or_else(|_| "info,str0m=warn".into()))
        .log_dir(dir);
    if let Some(a) = api {
        b = b.args(["--api", a]);
    }
    if let Some(ns) = ns {
        b = b.netns(ns);
    }
    let mut p = b.spawn()?;
    p.wait_ready("PLAY", Duration::from_secs(30))?;
    Ok(p)
}

/// `n` headless native peers on loopback UDP joining `stack`'s swarm one every 300 ms (the
/// staggered arrival of a live audience), each playing for `secs`.
pub fn play_swarm(dir: &std::path::Path, stack: &Stack, n: usize, secs: u64) -> Result<Vec<Proc>> {
    let mut peers = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("peer{i}");
        let p = play(dir, &name, None, &stack.master, Some(&stack.api), secs, &["--udp", "127.0.0.1:0"])?;
        peers.push(p);
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(peers)
}

/// Wait for a peer's final `SHOAL_PLAY_SUMMARY` line.
pub fn summary(p: &mut Proc, timeout: Duration) -> Result<serde_json::Value> {
    let line = p.wait_for_line(|l| l.starts_with("SHOAL_PLAY_SUMMARY "), timeout)?;
    let json = line.trim_start_matches("SHOAL_PLAY_SUMMARY ");
    serde_json::from_str(json).with_context(|| format!("{}: summary is not JSON: {json}", p.name()))
}

pub fn u(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut x = v;
    for k in path {
        x = &x[*k];
    }
    x.as_u64().unwrap_or(0)
}

/// SIGKILL, as a crash would.
pub fn kill9(p: &Proc) {
    let _ = std::process::Command::new("kill").args(["-9", &p.pid().to_string()]).status();
}
