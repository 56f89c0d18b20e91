//! The holdback control group through `shoal serve` (api + tracker + pingback): over many
//! joins its share holds within statistical tolerance; each session's group is the documented
//! function of its session id (so every API node agrees), and a viewer id keeps a viewer in one
//! group across sessions and across two API processes.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use shoal_pingback::policy::group_point;
use shoal_proto::manifest::key_to_b64;
use shoal_proto::SigningKey;
use shoal_testkit::{Proc, TestDir};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
const AUTH_KEYS: &str = "k1:holdback-test-secret-0123456789";
const HOLDBACK: f64 = 5.0;
const JOINS: usize = 4_000;

fn serve(dir: &std::path::Path, name: &str) -> (Proc, String) {
    let key = key_to_b64(SigningKey::from_bytes(&[7u8; 32]).verifying_key().as_bytes());
    let mut p = Proc::builder(name, SHOAL)
        .args(["serve", "--roles", "api,tracker,pingback", "--listen", "127.0.0.1:0"])
        .args(["--set", "auth.require_token=false", "--set", &format!("api.origin_public_key={key}")])
        .args(["--set", &format!("api.holdback_percent={HOLDBACK}")])
        .args(["--set", "api.rate_limit.per_second=1000000", "--set", "api.rate_limit.burst=1000000"])
        .env("SHOAL_AUTH_KEYS", AUTH_KEYS)
        .env("SHOAL_TICKETS_KEYS", "t1:holdback-ticket-secret-0123456789")
        .log_dir(dir)
        .spawn()
        .expect("spawn shoal serve");
    let ready = p.wait_ready("SERVE", Duration::from_secs(60)).expect("ready");
    let url = ready.url.trim_end_matches('/').to_owned();
    (p, url)
}

async fn join(http: &reqwest::Client, base: &str, token: Option<&str>) -> Value {
    let mut body = json!({"stream": "demo"});
    if let Some(t) = token {
        body["token"] = json!(t);
    }
    let r = http.post(format!("{base}/v1/join")).json(&body).send().await.expect("join");
    assert_eq!(r.status(), 200);
    r.json().await.expect("join json")
}

fn mint(viewer: &str) -> String {
    let out = std::process::Command::new(SHOAL)
        .args(["token", "--stream", "demo", "--ttl", "10m", "--viewer", viewer])
        .env_remove("SHOAL_CONFIG")
        .env("SHOAL_AUTH_KEYS", AUTH_KEYS)
        .output()
        .expect("shoal token runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holdback_share_holds_and_groups_are_stable() {
    let dir = TestDir::new("pingback_holdback").expect("test dir");
    let (_a, node_a) = serve(dir.path(), "serve-a");
    let (_b, node_b) = serve(dir.path(), "serve-b");
    let http = reqwest::Client::new();

    // Many joins, 16 at a time, half on each node.
    let mut reasons: HashMap<String, usize> = HashMap::new();
    let mut mismatches = Vec::new();
    let mut done = 0;
    while done < JOINS {
        let batch: Vec<_> = (0..16)
            .map(|i| {
                let http = http.clone();
                let base = if (done + i) % 2 == 0 { node_a.clone() } else { node_b.clone() };
                tokio::spawn(async move { join(&http, &base, None).await })
            })
            .collect();
        for t in batch {
            let j = t.await.expect("join task");
            let session = j["session_id"].as_str().expect("session id").to_owned();
            let reason = if j["p2p"] == true {
                "p2p".to_owned()
            } else {
                j["p2p_reason"].as_str().unwrap_or("?").to_owned()
            };
            let expected = if group_point(&session) < HOLDBACK { "holdback" } else { "p2p" };
            if reason != expected {
                mismatches.push((session, reason.clone()));
            }
            *reasons.entry(reason).or_default() += 1;
        }
        done += 16;
    }
    assert!(
        mismatches.is_empty(),
        "decisions that are not the documented function of the session id: {mismatches:?}"
    );
    let held = reasons.get("holdback").copied().unwrap_or(0);
    // Binomial(4000, 0.05): mean 200, sd 13.8; ±4 sd.
    let mean = JOINS as f64 * HOLDBACK / 100.0;
    let sd = (JOINS as f64 * HOLDBACK / 100.0 * (1.0 - HOLDBACK / 100.0)).sqrt();
    println!("{JOINS} joins: {reasons:?} (expected {mean:.0} ± {:.0} held back)", 4.0 * sd);
    assert!(
        (held as f64 - mean).abs() <= 4.0 * sd,
        "{held} held back of {JOINS}, expected {mean:.0} ± {:.0}",
        4.0 * sd
    );
    assert_eq!(reasons.len(), 2, "only p2p and holdback: {reasons:?}");

    // A viewer id decides the group, whatever the session and whichever node answers.
    let held_viewer = (0..10_000)
        .map(|i| format!("viewer-{i}"))
        .find(|v| group_point(v) < HOLDBACK)
        .expect("a held viewer");
    let free_viewer = (0..10_000)
        .map(|i| format!("viewer-{i}"))
        .find(|v| group_point(v) >= HOLDBACK)
        .expect("a free viewer");
    for (viewer, want_p2p) in [(held_viewer, false), (free_viewer, true)] {
        let token = mint(&viewer);
        for i in 0..20 {
            let base = if i % 2 == 0 { &node_a } else { &node_b };
            let j = join(&http, base, Some(&token)).await;
            assert_eq!(j["p2p"], want_p2p, "{viewer} on {base}: {j}");
            if !want_p2p {
                assert_eq!(j["p2p_reason"], "holdback");
            }
        }
    }

    // The API counts decisions in /metrics.
    let text =
        http.get(format!("{node_a}/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(
        text.contains("shoal_api_join_p2p_total{decision=\"holdback\"}"),
        "holdback decisions are counted"
    );
}
