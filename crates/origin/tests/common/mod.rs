//! Helpers shared by the origin's integration tests: an in-process origin on 127.0.0.1:0,
//! HTTP with reqwest, ffprobe.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use shoal_origin::{CancellationToken, Origin, OriginConfig};

pub struct Running {
    pub origin: Origin,
    pub base: String,
    pub cancel: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Start an origin (sources and HTTP) on a free loopback port. The origin's log goes to the
/// test's captured output (shown when a test fails: a relay's upstream errors, for one).
pub async fn start(cfg: OriginConfig) -> Running {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("shoal_origin=info")),
        )
        .with_test_writer()
        .try_init();
    let origin = Origin::new(cfg).expect("valid config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let cancel = CancellationToken::new();
    let _sources = origin.start_sources(cancel.clone()).expect("sources start");
    tokio::spawn(shoal_origin::serve(listener, origin.router(), cancel.clone()));
    Running { origin, base, cancel }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).no_proxy().build().expect("client")
}

pub async fn get_bytes(url: &str) -> (u16, bytes::Bytes) {
    let r = client().get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap_or_else(|e| panic!("GET {url} body: {e}")))
}

pub async fn media_playlist(url: &str) -> m3u8_rs::MediaPlaylist {
    let (status, body) = get_bytes(url).await;
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
    m3u8_rs::parse_media_playlist_res(&body)
        .unwrap_or_else(|e| panic!("{url} does not parse: {e:?}\n{}", String::from_utf8_lossy(&body)))
}

/// Poll `url` (a media playlist) until `pred` holds, at most `timeout`.
pub async fn wait_playlist(
    url: &str,
    timeout: Duration,
    pred: impl Fn(&m3u8_rs::MediaPlaylist) -> bool,
) -> m3u8_rs::MediaPlaylist {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let (status, body) = get_bytes(url).await;
        if status == 200 {
            if let Ok(pl) = m3u8_rs::parse_media_playlist_res(&body) {
                if pred(&pl) {
                    return pl;
                }
            }
        }
        last = format!("{status}: {}", String::from_utf8_lossy(&body));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{url}: condition not met within {timeout:?}; last answer {last}");
}

/// Fail (never skip) when a tool the test needs is missing.
pub fn require(tool: &str) {
    let ok = Command::new(tool).arg("-version").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(ok, "{tool} is required for this test (scripts/install-deps.sh installs it)");
}

/// `(pts, keyframe)` of every video packet, in order.
pub fn video_packets(path: &Path) -> Vec<(i64, bool)> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split(',');
            let pts = it
                .next()
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_else(|| panic!("bad ffprobe line {l:?}"));
            (pts, it.next().is_some_and(|f| f.contains('K')))
        })
        .collect()
}

/// Decode every frame; returns (codec, width, height, frames). Fails on any decoder error.
pub fn decode(path: &Path) -> (String, u32, u32, u64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffprobe errors on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // MPEG-TS lists the stream under its program too: take the first line.
    let text = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned();
    let f: Vec<&str> = text.split(',').collect();
    assert_eq!(f.len(), 4, "unexpected ffprobe output {text:?}");
    (
        f[0].to_owned(),
        f[1].parse().expect("width"),
        f[2].parse().expect("height"),
        f[3].parse().expect("frames"),
    )
}

/// Media playlist URL of each variant of a master playlist.
pub fn variant_urls(base_url: &str, master: &m3u8_rs::MasterPlaylist) -> Vec<String> {
    let base = reqwest::Url::parse(base_url).expect("url");
    master.variants.iter().map(|v| base.join(&v.uri).expect("join").to_string()).collect()
}

/// Send one request with the path exactly as given (no URL normalisation, which would turn
/// `%2e%2e` into `..` and resolve it away). Returns the status and the raw response head.
pub async fn raw_request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    // The server may answer (413, 401) and close before reading the body: not an error here.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}
