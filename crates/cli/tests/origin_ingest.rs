//! ffmpeg pushes HLS to `shoal origin --ingest-key` over HTTP PUT; the origin republishes it
//! under /live/, signed with its key, and refuses a wrong key.

mod origin_common;

use std::process::{Command, Stdio};
use std::time::Duration;

use origin_common::*;
use shoal_proto::SignedManifest;
use shoal_testkit::TestDir;

#[test]
fn ffmpeg_put_ingest_end_to_end() {
    let dir = TestDir::new("origin_ingest").expect("test dir");
    let o = start(&dir, "origin", &["--ingest-key", "k3y", "--listen", "127.0.0.1:0", "--window", "4"]);
    let ff = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=6"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-keyint_min",
            "25",
            "-sc_threshold",
            "0",
        ])
        .args(["-f", "hls", "-hls_time", "1", "-hls_list_size", "3", "-method", "PUT"])
        .args(["-headers", "X-Shoal-Ingest-Key: k3y\r\n"])
        .arg(format!("{}/ingest/cam/index.m3u8", o.base))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg is installed (scripts/install-deps.sh)");
    let pl = format!("{}/live/cam/src/index.m3u8", o.base);
    let (seq, uris) = wait_segments(&pl, 3, Duration::from_secs(30));
    assert!(seq > 1_700_000_000, "origin numbering, not ffmpeg's");
    let out = ff.wait_with_output().expect("ffmpeg ends");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));

    let master = get(&format!("{}/live/cam/master.m3u8", o.base)).text();
    assert!(master.contains("RESOLUTION=320x240") && master.contains("src/index.m3u8"), "{master}");
    let m = get(&format!("{}/live/cam/src/manifest.json", o.base));
    let manifest = SignedManifest::from_json(&m.body).expect("manifest parses");
    manifest.verify_all(&o.public_key).expect("verifies with the printed key");
    let uri = &uris[uris.len() - 1];
    let seg = get(&format!("{}/live/cam/src/{uri}", o.base));
    assert_eq!(seg.status, 200);
    if let Some(e) = manifest.segments.iter().find(|e| &e.uri == uri) {
        assert!(e.verify_segment(&seg.body));
    }
    let path = dir.join("seg.ts");
    std::fs::write(&path, &seg.body).expect("write");
    let (w, h, frames) = ffprobe(&path);
    assert_eq!((w, h), (320, 240));
    assert!(frames >= 20);

    // A wrong key changes nothing.
    let before = get(&pl).body;
    assert_eq!(
        request(&o.base, "PUT", "/ingest/cam/evil.ts", &[("X-Shoal-Ingest-Key", "nope")], &seg.body),
        401
    );
    assert_eq!(
        request(&o.base, "PUT", "/ingest/cam/index.m3u8", &[("X-Shoal-Ingest-Key", "nope")], b"#EXTM3U\n"),
        401
    );
    assert_eq!(get(&pl).body, before);
}
