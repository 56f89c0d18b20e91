//! The stock npm `bittorrent-tracker` client (what p2p-media-loader runs in browsers), in node
//! with a real WebRTC stack, uses Shoal's WebTorrent path unchanged: two clients exchange offer
//! and answer through the tracker and a DataChannel opens between them.
//!
//! Runs inside a network namespace of its own (libwebrtc gathers no loopback candidates; the
//! namespace's veth address is the only other one). Needs root, node and `web/node_modules`
//! (`make deps`); fails with the reason when they are missing.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use shoal_testkit::{browser::web_dir, Netns};
use shoal_tracker::{AllowAll, Tracker};

#[test]
fn stock_bittorrent_tracker_clients_connect_through_shoal() -> Result<()> {
    let web = web_dir();
    let script = web.join("tools/webtorrent-pair.mjs");
    for needed in ["node_modules/bittorrent-tracker/package.json", "node_modules/@roamhq/wrtc/package.json"] {
        ensure!(
            web.join(needed).is_file(),
            "{} is missing: run `npm ci` in web/ (make deps)",
            web.join(needed).display()
        );
    }
    let ns = Netns::new()?;
    let rt = ns.tokio_runtime(1)?;
    let (addr, tracker) = rt.block_on(async {
        let tracker = Tracker::new(common::fast_config(), Arc::new(AllowAll))?;
        let app = tracker.router();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
        });
        anyhow::Ok((addr, tracker))
    })?;

    let child = ns
        .command("node")
        .arg(&script)
        .arg(format!("ws://{addr}/announce"))
        .arg("30000")
        .current_dir(&web)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting node (Debian package `nodejs`)")?;
    // The script ends itself after 30 s; the wait is bounded by that.
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default();
    let Ok(report) = serde_json::from_str::<Value>(line) else {
        bail!("no report from webtorrent-pair.mjs ({}):\n{stdout}\n{stderr}", out.status);
    };
    assert_eq!(report["ok"], true, "{report}\n{stderr}");
    assert!(out.status.success(), "{}", out.status);
    assert_eq!(report["b_got"], "ping", "{report}");
    assert_eq!(report["a_got"], "pong", "{report}");
    assert_eq!(report["b_update"]["incomplete"], 1, "{report}");
    assert_eq!(report["a_update"]["incomplete"], 2, "{report}");

    let s = tracker.stats();
    assert!(s.announces >= 2, "{s:?}");
    // One offer to b (the only other member), one answer back to a.
    assert!(s.signals_relayed >= 2, "{s:?}");
    assert_eq!(s.rejects, 0, "{s:?}");
    let t = tracker.clone();
    let gone = rt.block_on(async move {
        common::eventually(Duration::from_secs(5), || t.stats().connections == 0).await
    });
    assert!(gone, "node exited; its sockets are closed: {:?}", tracker.stats());
    assert_eq!(tracker.stats().peers, 0);
    Ok(())
}
