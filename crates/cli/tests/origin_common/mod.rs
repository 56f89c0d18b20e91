//! Helpers for the `shoal origin` end-to-end tests: start the binary, read its two stdout
//! lines, fetch over loopback.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use shoal_proto::VerifyingKey;
use shoal_testkit::{http, Proc, TestDir};

pub struct Origin {
    pub proc: Proc,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub master: String,
    pub public_key: VerifyingKey,
    pub public_b64: String,
}

/// Run `shoal origin <args>` and wait for `SHOAL_ORIGIN_KEY` and `SHOAL_ORIGIN_READY`.
pub fn start(dir: &TestDir, name: &str, args: &[&str]) -> Origin {
    let mut proc = Proc::builder(name, env!("CARGO_BIN_EXE_shoal"))
        .arg("origin")
        .args(args)
        .env("RUST_LOG", "info,shoal_origin=debug")
        .log_dir(dir.path())
        .spawn()
        .expect("shoal origin starts");
    let key_line = proc
        .wait_for_line(|l| l.starts_with("SHOAL_ORIGIN_KEY "), Duration::from_secs(60))
        .expect("key line");
    let public_b64 = key_line.split_whitespace().nth(1).expect("public key field").to_owned();
    let public_key = shoal_proto::manifest::verifying_key_from_b64(&public_b64).expect("valid public key");
    let ready = proc.wait_ready("ORIGIN", Duration::from_secs(60)).expect("origin ready");
    let master = ready.fields.get(1).cloned().expect("master URL on the READY line");
    Origin { proc, base: ready.url.trim_end_matches('/').to_owned(), master, public_key, public_b64 }
}

pub fn get(url: &str) -> http::Response {
    http::get(None, url, Duration::from_secs(10)).unwrap_or_else(|e| panic!("GET {url}: {e:#}"))
}

/// `(media sequence, segment URIs)` of a media playlist, by plain line parsing.
pub fn segments(url: &str) -> (u64, Vec<String>) {
    let r = get(url);
    assert_eq!(r.status, 200, "GET {url}: {}", r.text());
    let text = r.text();
    let seq = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no media sequence in {text}"));
    let uris = text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect();
    (seq, uris)
}

/// Poll a media playlist until it lists at least `n` segments.
pub fn wait_segments(url: &str, n: usize, timeout: Duration) -> (u64, Vec<String>) {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(r) = http::get(None, url, Duration::from_secs(5)) {
            if r.status == 200 {
                let (seq, uris) = segments(url);
                if uris.len() >= n {
                    return (seq, uris);
                }
            }
            last = format!("{} {}", r.status, r.text());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{url}: fewer than {n} segments within {timeout:?}; last answer: {last}");
}

/// One raw HTTP/1.1 request (for PUT); returns the status.
pub fn request(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let _ = s.write_all(body);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {out:?}"))
}

/// Decode a segment with ffprobe: `(width, height, frames)`.
pub fn ffprobe(path: &std::path::Path) -> (u32, u32, u64) {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=width,height,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed (scripts/install-deps.sh)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let f: Vec<u64> = line.trim().split(',').map(|x| x.parse().expect("number")).collect();
    assert_eq!(f.len(), 3, "ffprobe output {text:?}");
    (f[0] as u32, f[1] as u32, f[2])
}
