//! The STUN server against real UDP: an independent client (coturn's `turnutils_stunclient`),
//! our own client, malformed packets and the per-source rate limit.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use shoal_stun::ratelimit::RateLimitConfig;
use shoal_stun::server::{StunConfig, StunCounters, StunServer};
use shoal_stun::{query, BindingRequest, QueryOptions, ResponseMatch};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

struct Running {
    addr: SocketAddr,
    counters: Arc<StunCounters>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("server stops within 5 s")
            .expect("server task did not panic");
    }
}

async fn start(rate_limit: RateLimitConfig) -> Running {
    let cfg = StunConfig { listen: "127.0.0.1:0".into(), rate_limit, ..StunConfig::default() };
    let server = StunServer::bind(&cfg).await.expect("bind 127.0.0.1:0");
    let addr = server.local_addr().expect("local addr");
    let counters = server.counters();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Running { addr, counters, stop: Some(tx), task }
}

fn get(c: &AtomicU64) -> u64 {
    StunCounters::get(c)
}

fn stunclient() -> &'static str {
    const BIN: &str = "turnutils_stunclient";
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(BIN).is_file()))
        .unwrap_or(false);
    assert!(found, "{BIN} not found: install Debian's `coturn` package (scripts/install-deps.sh does)");
    BIN
}

async fn run_stunclient(args: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(stunclient()).args(args).kill_on_drop(true).output(),
    )
    .await
    .expect("turnutils_stunclient finished within 20 s")
    .expect("turnutils_stunclient runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "turnutils_stunclient failed ({}):\n{text}", out.status);
    text
}

/// `UDP reflexive addr: 127.0.0.1:40000` in turnutils_stunclient's output.
fn reflexive(text: &str) -> Option<SocketAddr> {
    text.lines().find_map(|l| l.split("UDP reflexive addr:").nth(1)).and_then(|rest| rest.trim().parse().ok())
}

#[tokio::test]
async fn independent_client_gets_its_reflexive_address() {
    let srv = start(RateLimitConfig::new(100.0, 100)).await;
    let port = srv.addr.port().to_string();
    let text = run_stunclient(&["-p", &port, "127.0.0.1"]).await;
    let mapped = reflexive(&text).unwrap_or_else(|| panic!("no reflexive address in output:\n{text}"));
    assert_eq!(mapped.ip().to_string(), "127.0.0.1", "{text}");
    assert_ne!(mapped.port(), 0);
    assert_ne!(mapped.port(), srv.addr.port(), "the client's own port, not the server's");
    assert!(get(&srv.counters.answered) >= 1, "server counted the answer");
    assert_eq!(get(&srv.counters.dropped), 0, "client's request was well-formed for us");
    srv.stop().await;
}

#[tokio::test]
async fn independent_client_in_rfc5780_mode_gets_420_for_change_request() {
    // `-f` first asks a plain Binding request, then sends CHANGE-REQUEST, which a one-address
    // server does not implement: RFC 5780 §7.2 / RFC 8489 say answer 420 Unknown Attribute
    // rather than pretend. The client then waits for a test it cannot run, so it is killed.
    use tokio::io::{AsyncBufReadExt, BufReader};
    let srv = start(RateLimitConfig::new(100.0, 100)).await;
    let port = srv.addr.port().to_string();
    let mut child = tokio::process::Command::new(stunclient())
        .args(["-f", "-p", &port, "127.0.0.1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("turnutils_stunclient runs");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(l)) = lines.next_line().await {
            seen.push_str(&l);
            seen.push('\n');
            if let Some(a) = reflexive(&l) {
                return Some(a);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let mapped = found.unwrap_or_else(|| panic!("no reflexive address printed:\n{seen}"));
    assert_eq!(mapped.ip().to_string(), "127.0.0.1");
    // The CHANGE-REQUEST follows the first answer; give it up to 5 s.
    let mut errors = 0;
    for _ in 0..50 {
        errors = get(&srv.counters.errors_sent);
        if errors > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill().await;
    assert!(errors >= 1, "no 420 sent for CHANGE-REQUEST; client said:\n{seen}");
    assert_eq!(get(&srv.counters.dropped), 0);
    srv.stop().await;
}

#[tokio::test]
async fn own_client_from_shared_socket() {
    let srv = start(RateLimitConfig::new(100.0, 100)).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let me = sock.local_addr().expect("addr");
    let mapped = query(&sock, srv.addr, QueryOptions::default()).await.expect("answer");
    assert_eq!(mapped, me);

    // The SDK path: send the bytes itself, classify what comes back.
    let req = BindingRequest::new();
    sock.send_to(req.bytes(), srv.addr).await.expect("send");
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("reply within 5 s")
        .expect("recv");
    assert_eq!(from, srv.addr);
    assert_eq!(req.match_response(&buf[..n]), ResponseMatch::Mapped(me));
    assert_eq!(
        BindingRequest::new().match_response(&buf[..n]),
        ResponseMatch::OtherStun,
        "other transaction"
    );
    srv.stop().await;
}

#[tokio::test]
async fn malformed_packets_are_dropped_and_server_keeps_serving() {
    let srv = start(RateLimitConfig::new(0.0, 1)).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let good = BindingRequest::new();
    let mut bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 20],
        vec![0u8; 1500],
        good.bytes()[..good.bytes().len() - 1].to_vec(),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ];
    // Wrong fingerprint.
    let mut fp = good.bytes().to_vec();
    let last = fp.len() - 1;
    fp[last] ^= 0x55;
    bad.push(fp);
    // A Binding *response* and an indication: never answered (no reflection).
    let mut resp = good.bytes().to_vec();
    resp[0] = 0x01;
    resp[1] = 0x01;
    bad.push(resp);
    let mut ind = good.bytes().to_vec();
    ind[1] = 0x11;
    bad.push(ind);
    // Deterministic pseudo-random mutations of a valid request.
    let mut x: u32 = 0x1234_5678;
    for _ in 0..500 {
        let mut m = good.bytes().to_vec();
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let i = (x as usize) % m.len();
            m[i] ^= (x >> 8) as u8 | 1;
        }
        bad.push(m);
    }
    for b in &bad {
        sock.send_to(b, srv.addr).await.expect("send");
    }
    // Whatever came back for the mutated packets must be valid STUN with the transaction id
    // of what was sent; then a clean request still gets its answer.
    let mapped = query(&sock, srv.addr, QueryOptions::default()).await.expect("server still answers");
    assert_eq!(mapped, sock.local_addr().expect("addr"));
    let dropped = get(&srv.counters.dropped);
    assert!(dropped >= 9, "malformed packets counted as dropped: {dropped}");
    srv.stop().await;
}

#[tokio::test]
async fn rate_limit_per_source() {
    let srv = start(RateLimitConfig::new(1.0, 5)).await;
    let noisy = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut answered = 0;
    let mut buf = [0u8; 1500];
    for _ in 0..20 {
        let req = BindingRequest::new();
        noisy.send_to(req.bytes(), srv.addr).await.expect("send");
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(300), noisy.recv_from(&mut buf)).await
        {
            if matches!(req.match_response(&buf[..n]), ResponseMatch::Mapped(_)) {
                answered += 1;
            }
        }
    }
    // 5 in the burst, plus at most ~1/s refill over the ≤ 6 s the loop can take.
    assert!((5..=11).contains(&answered), "answered {answered} of 20");
    assert!(get(&srv.counters.rate_limited) >= 9, "rate-limited {}", get(&srv.counters.rate_limited));
    srv.stop().await;
}

/// Our client against an independent server: coturn's `turnserver` in STUN-only mode.
#[tokio::test]
async fn own_client_against_coturn_server() {
    const BIN: &str = "turnserver";
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(BIN).is_file()))
        .unwrap_or(false);
    assert!(found, "{BIN} not found: install Debian's `coturn` package (scripts/install-deps.sh does)");
    let dir = std::env::temp_dir().join(format!("shoal-stun-coturn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // turnserver cannot bind port 0: pick a free port and release it just before.
    let port = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe bind");
        probe.local_addr().expect("probe addr").port()
    };
    let port_s = port.to_string();
    let db = dir.join("turndb");
    let _server = tokio::process::Command::new(BIN)
        .args(["-n", "--listening-ip", "127.0.0.1", "--listening-port", &port_s])
        .args(["--stun-only", "--no-tls", "--no-dtls", "--no-cli", "--log-file", "stdout"])
        .arg("--userdb")
        .arg(&db)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("turnserver starts");
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let opts = QueryOptions {
        initial_rto: Duration::from_millis(100),
        attempts: 3,
        last_wait: Duration::from_millis(300),
    };
    // Up to ~10 s for turnserver to come up.
    let mut last = None;
    for _ in 0..10 {
        match query(&sock, server, opts).await {
            Ok(a) => {
                last = Some(a);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(last, Some(sock.local_addr().expect("addr")), "coturn told us our own address");
}
