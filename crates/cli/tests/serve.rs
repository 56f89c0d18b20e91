//! `shoal serve` as a process: every role from one command, wired together (token → join →
//! tracker announce with the ticket → STUN), separate listeners, and refused configurations.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::json;
use shoal_proto::api::JoinResponse;
use shoal_proto::manifest::{key_id, key_to_b64};
use shoal_proto::tracker::{ErrorCode, ServerMsg};
use shoal_proto::SigningKey;
use shoal_testkit::{Proc, TestDir};
use tokio_tungstenite::tungstenite::Message;

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
const AUTH_KEYS: &str = "k1:serve-test-secret-0123456789";

fn origin_pub() -> String {
    key_to_b64(SigningKey::from_bytes(&[3u8; 32]).verifying_key().as_bytes())
}

fn serve_env() -> Vec<(&'static str, String)> {
    vec![
        ("SHOAL_AUTH_KEYS", AUTH_KEYS.into()),
        ("SHOAL_AUTH_ADMIN_SECRET", "serve-test-admin-secret".into()),
        ("SHOAL_API_ORIGIN_PUBLIC_KEY", origin_pub()),
        ("SHOAL_API_HOLDBACK_PERCENT", "0".into()),
        ("SHOAL_API_CDN", "http://cdn-a.test/live/{stream}/,http://cdn-b.test/{stream}/".into()),
        ("RUST_LOG", "info".into()),
    ]
}

fn field<'a>(fields: &'a [String], key: &str) -> Option<&'a str> {
    fields.iter().find_map(|f| f.strip_prefix(&format!("{key}=")))
}

/// `shoal token` with the same environment as the server.
fn mint(stream: &str, origin: &str) -> String {
    let out = std::process::Command::new(SHOAL)
        .args(["token", "--stream", stream, "--ttl", "10m", "--origin", origin])
        .env_remove("SHOAL_CONFIG")
        .env("SHOAL_AUTH_KEYS", AUTH_KEYS)
        .output()
        .expect("shoal token runs");
    assert!(out.status.success(), "shoal token failed: {}", String::from_utf8_lossy(&out.stderr));
    let t = String::from_utf8(out.stdout).expect("utf-8").trim().to_owned();
    assert_eq!(t.split('.').count(), 3, "a JWT: {t}");
    t
}

async fn announce(url: &str, peer_id: &str, ticket: &str) -> ServerMsg {
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url))
        .await
        .expect("tracker connects within 10 s")
        .expect("websocket handshake");
    let msg = json!({
        "type": "announce",
        "swarm": {"stream": "demo", "rendition": "720p"},
        "peer_id": peer_id,
        "ticket": ticket,
        "upload_kbps": 4000,
        "want": 8,
    });
    ws.send(Message::Text(msg.to_string().into())).await.expect("send announce");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // Skip pings and the like; the first text frame is the answer.
    for _ in 0..16 {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("tracker answers within 10 s")
            .expect("connection open")
            .expect("frame");
        if let Message::Text(t) = frame {
            return ServerMsg::parse(&t).expect("a tracker message");
        }
    }
    panic!("no text frame from the tracker in 16 frames");
}

#[tokio::test]
async fn serve_runs_all_roles_from_one_command() {
    let dir = TestDir::new("serve_runs_all_roles_from_one_command").expect("test dir");
    let mut b = Proc::builder("serve", SHOAL).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--stun-listen",
        "127.0.0.1:0",
    ]);
    for (k, v) in serve_env() {
        b = b.env(k, v);
    }
    let mut serve = b.log_dir(dir.path()).spawn().expect("spawn shoal serve");
    let ready = serve.wait_ready("SERVE", Duration::from_secs(60)).expect("ready line");
    let base = ready.url.clone();
    assert!(base.starts_with("http://127.0.0.1:"), "{}", ready.line);
    let stun: SocketAddr = field(&ready.fields, "stun").expect("stun= field").parse().expect("stun address");
    assert_eq!(ready.fields.len(), 2, "one shared HTTP listener: {}", ready.line);
    let http = reqwest::Client::new();

    // /health names every role.
    let health: serde_json::Value =
        http.get(format!("{base}/health")).send().await.expect("health").json().await.expect("json");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["roles"], json!(["api", "tracker", "pingback", "stun"]));

    // Token from `shoal token`, join from a page.
    let token = mint("demo", "https://site.test");
    let resp = http
        .post(format!("{base}/v1/join"))
        .header("Origin", "https://site.test")
        .json(&json!({"stream": "demo", "token": token, "client": {"platform": "linux"}}))
        .send()
        .await
        .expect("join");
    assert_eq!(resp.status(), 200);
    let j: JoinResponse = resp.json().await.expect("join json");
    let port = base.rsplit(':').next().expect("port");
    assert_eq!(j.trackers, vec![format!("ws://127.0.0.1:{port}/v1/tracker")]);
    assert_eq!(j.stun, vec![format!("stun:127.0.0.1:{}", stun.port())]);
    assert_eq!(j.pingback.url, format!("{base}/v1/pingback"));
    assert_eq!(j.cdn, vec!["http://cdn-a.test/live/demo/", "http://cdn-b.test/demo/"]);
    assert_eq!(j.origin_public_key, origin_pub());
    assert_eq!(j.key_id, key_id(&SigningKey::from_bytes(&[3u8; 32]).verifying_key()));
    assert!(j.p2p, "{:?}", j.p2p_reason);
    // Wrong origin and no token are refused.
    let r = http
        .post(format!("{base}/v1/join"))
        .header("Origin", "https://evil.test")
        .json(&json!({"stream": "demo", "token": mint("demo", "https://site.test")}))
        .send()
        .await
        .expect("join");
    assert_eq!(r.status(), 403);
    let r = http.post(format!("{base}/v1/join")).json(&json!({"stream": "demo"})).send().await.expect("join");
    assert_eq!(r.status(), 401);

    // The tracker admits the ticket for this peer id, and refuses it for another.
    match announce(&j.trackers[0], &j.peer_id, &j.ticket).await {
        ServerMsg::Peers(p) => assert_eq!(p.swarm_size, 1),
        other => panic!("announce with a valid ticket: {other:?}"),
    }
    match announce(&j.trackers[0], "0000000000000000", &j.ticket).await {
        ServerMsg::Error(e) => assert_eq!(e.code, ErrorCode::Unauthorized, "{}", e.reason),
        other => panic!("announce with someone else's ticket: {other:?}"),
    }
    match announce(&j.trackers[0], &j.peer_id, "t1.local.AAAA.AAAA").await {
        ServerMsg::Error(e) => assert_eq!(e.code, ErrorCode::Unauthorized),
        other => panic!("announce with a forged ticket: {other:?}"),
    }

    // STUN on the advertised address.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mapped =
        shoal_stun::query(&sock, stun, shoal_stun::QueryOptions::default()).await.expect("STUN answer");
    assert_eq!(mapped, sock.local_addr().expect("addr"));

    // Metrics from every role on /metrics.
    let m = http.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    for needle in [
        "shoal_build_info",
        "shoal_api_joins_total{outcome=\"ok\"}",
        "shoal_api_joins_total{outcome=\"origin_not_allowed\"}",
        "shoal_api_joins_total{outcome=\"token_missing\"}",
        "shoal_stun_requests_total{outcome=\"answered\"}",
        "shoal_api_join_duration_seconds_bucket",
    ] {
        assert!(m.contains(needle), "{needle} missing from /metrics:\n{m}");
    }

    // SIGTERM: clean exit.
    let status = serve.stop(Duration::from_secs(15)).expect("stop");
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn serve_separate_listeners_and_a_subset_of_roles() {
    let dir = TestDir::new("serve_separate_listeners_and_a_subset_of_roles").expect("test dir");
    let mut serve = Proc::builder("serve", SHOAL)
        .env("SHOAL_API_HOLDBACK_PERCENT", "0") // every viewer in the swarm: no control group
        .args(["serve", "--roles", "api,tracker", "--listen", "127.0.0.1:0"])
        .args(["--set", "serve.tracker_listen=127.0.0.1:0", "--set", "auth.require_token=false"])
        .env("SHOAL_API_ORIGIN_PUBLIC_KEY", origin_pub())
        .log_dir(dir.path())
        .spawn()
        .expect("spawn");
    let ready = serve.wait_ready("SERVE", Duration::from_secs(60)).expect("ready line");
    assert!(field(&ready.fields, "stun").is_none(), "no STUN role: {}", ready.line);
    let tracker_base = field(&ready.fields, "tracker").expect("tracker= field").to_owned();
    assert_ne!(tracker_base, ready.url);
    let http = reqwest::Client::new();
    let health: serde_json::Value =
        http.get(format!("{tracker_base}/health")).send().await.expect("health").json().await.expect("json");
    assert_eq!(health["roles"], json!(["tracker"]));
    let j: JoinResponse = http
        .post(format!("{}/v1/join", ready.url))
        .json(&json!({"stream": "demo"}))
        .send()
        .await
        .expect("join")
        .json()
        .await
        .expect("json");
    let tport = tracker_base.rsplit(':').next().expect("port");
    assert_eq!(j.trackers, vec![format!("ws://127.0.0.1:{tport}/v1/tracker")]);
    assert!(j.stun.is_empty());
    assert!(j.pingback.url.is_empty(), "no pingback role, no URL");
    match announce(&j.trackers[0], &j.peer_id, &j.ticket).await {
        ServerMsg::Peers(p) => assert_eq!(p.swarm_size, 1),
        other => panic!("{other:?}"),
    }
    // The API listener does not serve the tracker.
    let r = http.get(format!("{}/v1/tracker", ready.url)).send().await.expect("get");
    assert_eq!(r.status(), 404);
    let status = serve.stop(Duration::from_secs(15)).expect("stop");
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn serve_stun_only_still_has_health_and_metrics() {
    let dir = TestDir::new("serve_stun_only_still_has_health_and_metrics").expect("test dir");
    let mut serve = Proc::builder("serve", SHOAL)
        .args(["serve", "--roles", "stun", "--listen", "127.0.0.1:0", "--stun-listen", "127.0.0.1:0"])
        .log_dir(dir.path())
        .spawn()
        .expect("spawn");
    let ready = serve.wait_ready("SERVE", Duration::from_secs(60)).expect("ready line");
    let stun: SocketAddr = field(&ready.fields, "stun").expect("stun= field").parse().expect("addr");
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mapped =
        shoal_stun::query(&sock, stun, shoal_stun::QueryOptions::default()).await.expect("STUN answer");
    assert_eq!(mapped, sock.local_addr().expect("addr"));
    let http = reqwest::Client::new();
    let health: serde_json::Value =
        http.get(format!("{}/health", ready.url)).send().await.expect("health").json().await.expect("json");
    assert_eq!(health["roles"], json!(["stun"]));
    let m =
        http.get(format!("{}/metrics", ready.url)).send().await.expect("metrics").text().await.expect("text");
    assert!(m.contains("shoal_stun_requests_total{outcome=\"answered\"}"), "{m}");
    let r = http
        .post(format!("{}/v1/join", ready.url))
        .json(&json!({"stream": "demo"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 404, "no API role");
    let status = serve.stop(Duration::from_secs(15)).expect("stop");
    assert!(status.success(), "exit status {status}");
}

fn run_shoal(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new(SHOAL);
    c.args(args).env_remove("SHOAL_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("shoal runs")
}

/// Arguments, extra environment, and what stderr must mention.
type BadCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn serve_refuses_bad_configuration_clearly() {
    let cases: [BadCase<'_>; 4] = [
        (
            &["serve", "--roles", "api", "--listen", "127.0.0.1:0"],
            &[("SHOAL_AUTH_KEYS", AUTH_KEYS)],
            "tickets.keys",
        ),
        (&["serve", "--listen", "127.0.0.1:0", "--stun-listen", "127.0.0.1:0"], &[], "auth.keys"),
        (&["serve", "--listen", "127.0.0.1:0"], &[("SHOAL_API_NO_SUCH_KEY", "1")], "SHOAL_API_NO_SUCH_KEY"),
        (&["serve", "--roles", "api,cdn"], &[], "unknown role"),
    ];
    for (args, env, needle) in cases {
        let out = run_shoal(args, env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: stderr should mention {needle}:\n{err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("SHOAL_SERVE_READY"));
    }
}

#[test]
fn print_config_is_the_example_file() {
    let out = run_shoal(&["serve", "--print-config"], &[]);
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/shoal.example.toml"))
            .expect("config/shoal.example.toml");
    assert_eq!(printed, example);
    // And a server starts from it (with the secrets it deliberately leaves out).
    assert!(printed.contains("[tracker]") && printed.contains("[api.rate_limit]"));
}
