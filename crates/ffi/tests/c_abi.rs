//! The C ABI from C: `tests/smoke.c` compiled with gcc against `include/shoal.h` and the
//! cdylib, started against a small static HLS fixture; the test fetches the master playlist
//! and a segment through the client's local proxy while the C program holds the handle.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;

const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=800000\n360p/index.m3u8\n";
const MEDIA: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.000,\n7.ts\n#EXTINF:2.000,\n8.ts\n";

fn segment_bytes() -> Vec<u8> {
    (0..150_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// Where cargo put the cdylib built for this test run: next to the test binary
/// (`target/debug/deps`), not the uplifted copy in `target/debug`, which only `cargo build`
/// refreshes.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().expect("target/debug/deps").to_path_buf()
}

#[test]
fn c_program_drives_a_client_through_the_c_abi() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind fixture");
    let cdn = listener.local_addr().expect("addr");
    let seg = segment_bytes();
    let seg2 = seg.clone();
    let app = Router::new()
        .route("/live/demo/master.m3u8", get(|| async { MASTER }))
        .route("/live/demo/360p/index.m3u8", get(|| async { MEDIA }))
        .route("/live/demo/360p/7.ts", get(move || async move { seg2.clone() }));
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib_dir = lib_dir();
    assert!(
        lib_dir.join("libshoal_ffi.so").exists(),
        "libshoal_ffi.so not in {} (cargo builds the cdylib with the tests)",
        lib_dir.display()
    );
    let out = std::env::temp_dir().join(format!("shoal-c-smoke-{}", std::process::id()));
    let gcc = Command::new("gcc")
        .arg("-std=c99")
        .arg("-Wall")
        .arg("-Werror")
        .arg(dir.join("tests/smoke.c"))
        .arg("-I")
        .arg(dir.join("include"))
        .arg("-L")
        .arg(&lib_dir)
        .arg("-lshoal_ffi")
        // RPATH (not RUNPATH), and no inherited LD_LIBRARY_PATH below: cargo's points at
        // target/debug first, whose copy of the library may be older than this test's.
        .arg("-Wl,--disable-new-dtags")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-o")
        .arg(&out)
        .output()
        .expect("gcc runs (apt-get install gcc)");
    assert!(gcc.status.success(), "gcc failed:\n{}", String::from_utf8_lossy(&gcc.stderr));

    let master = format!("http://{cdn}/live/demo/master.m3u8");
    let mut child = Command::new(&out)
        .arg(&master)
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("smoke binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let local = first
        .strip_prefix("LOCAL_URL ")
        .unwrap_or_else(|| panic!("expected LOCAL_URL, got {first:?}"))
        .to_owned();

    let (master_text, segment) = rt.block_on(async {
        let http = reqwest::Client::new();
        let m = http.get(&local).send().await.expect("proxy answers").text().await.expect("body");
        let base = local.trim_end_matches("master.m3u8");
        let p = http
            .get(format!("{base}360p/index.m3u8"))
            .send()
            .await
            .expect("playlist")
            .text()
            .await
            .expect("body");
        assert!(p.contains("\n7.ts\n"), "media playlist through the proxy:\n{p}");
        let s = http.get(format!("{base}360p/7.ts")).send().await.expect("segment");
        assert_eq!(s.headers().get("x-shoal-source").and_then(|v| v.to_str().ok()), Some("cdn"));
        (m, s.bytes().await.expect("segment body").to_vec())
    });
    assert!(master_text.contains("360p/index.m3u8"), "rewritten master:\n{master_text}");
    assert_eq!(segment.len(), seg.len());
    assert!(segment == seg, "segment bytes through the proxy differ from the CDN's");

    child.stdin.take().expect("stdin").write_all(b"go\n").expect("tell it to stop");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut rest = Vec::new();
    for l in lines.map_while(Result::ok) {
        rest.push(l);
        if Instant::now() > deadline {
            break;
        }
    }
    let status = child.wait().expect("smoke exits");
    let _ = std::fs::remove_file(&out);
    assert!(status.success(), "smoke failed: {status}; output: {rest:?}");
    assert!(rest.iter().any(|l| l == "C_SMOKE_OK"), "{rest:?}");
    let stats = rest.iter().find_map(|l| l.strip_prefix("STATS ")).expect("stats line");
    let v: serde_json::Value = serde_json::from_str(stats).expect("stats are JSON");
    assert!(v["http_bytes"].as_u64().unwrap_or(0) >= seg.len() as u64, "{v}");
    assert_eq!(v["delivered"], 1, "{v}");
}
