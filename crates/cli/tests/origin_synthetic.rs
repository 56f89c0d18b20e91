//! `shoal origin --synthetic` as a process: readiness and key lines, a playable master
//! playlist, segments that decode and match the manifest signed with the printed key;
//! `--key` from `shoal keygen`; clean exit on SIGTERM; clear errors for bad flags.

mod origin_common;

use std::time::Duration;

use origin_common::*;
use shoal_proto::SignedManifest;
use shoal_testkit::TestDir;

#[test]
fn synthetic_origin_serves_signed_decodable_segments() {
    let dir = TestDir::new("origin_synthetic").expect("test dir");
    let mut o = start(
        &dir,
        "origin",
        &[
            "--synthetic",
            "--listen",
            "127.0.0.1:0",
            "--stream",
            "cli",
            "--segment-duration",
            "1",
            "--window",
            "4",
        ],
    );
    assert_eq!(o.master, format!("{}/live/cli/master.m3u8", o.base));
    let master = get(&o.master);
    assert_eq!(master.status, 200);
    let text = master.text();
    assert!(text.contains("RESOLUTION=640x360") && text.contains("RESOLUTION=1280x720"), "{text}");
    assert!(text.contains("CODECS=\"avc1."), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.ends_with("/index.m3u8")).collect::<Vec<_>>(),
        ["360p/index.m3u8", "720p/index.m3u8"]
    );

    let pl = format!("{}/live/cli/720p/index.m3u8", o.base);
    let (seq, uris) = wait_segments(&pl, 3, Duration::from_secs(30));
    assert_eq!(uris[0], format!("{seq}.ts"));
    assert!(get(&pl).text().contains("#EXT-X-PROGRAM-DATE-TIME:"));

    assert_eq!(get(&format!("{}/.well-known/shoal/origin.pub", o.base)).text().trim(), o.public_b64);
    let m = get(&format!("{}/live/cli/720p/manifest.json", o.base));
    assert_eq!(m.status, 200);
    let manifest = SignedManifest::from_json(&m.body).expect("manifest parses");
    manifest.verify_all(&o.public_key).expect("signed with the printed key");
    let entry = manifest.segments.last().expect("an entry");
    let seg = get(&format!("{}/live/cli/720p/{}", o.base, entry.uri));
    assert_eq!(seg.status, 200);
    assert_eq!(seg.header("content-type"), Some("video/mp2t"));
    assert!(entry.verify_segment(&seg.body));
    let path = dir.join("720p.ts");
    std::fs::write(&path, &seg.body).expect("write");
    assert_eq!(ffprobe(&path), (1280, 720, 30));

    let status = o.proc.stop(Duration::from_secs(10)).expect("stops");
    assert!(status.success(), "SIGTERM ends the origin cleanly, got {status}");
}

#[test]
fn origin_uses_the_keygen_key_and_refuses_bad_flags() {
    let dir = TestDir::new("origin_keyfile").expect("test dir");
    let keys = dir.join("keys");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["keygen", "--out"])
        .arg(&keys)
        .output()
        .expect("keygen runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(keys.join("origin.pub")).expect("public key file");
    let key_file = keys.join("origin.key");
    let key_arg = key_file.to_str().expect("utf-8 path");
    let o = start(&dir, "origin-key", &["--ingest-key", "k", "--key", key_arg, "--listen", "127.0.0.1:0"]);
    assert_eq!(o.public_b64, public.trim());
    assert_eq!(get(&format!("{}/.well-known/shoal/origin.pub", o.base)).text().trim(), public.trim());
    assert_eq!(get(&format!("{}/health", o.base)).status, 200);
    drop(o);

    for (args, needle) in [
        (vec!["--listen", "127.0.0.1:0"], "nothing to publish"),
        (vec!["--synthetic", "--ladder", "720p:1280@2500"], "ladder"),
        (vec!["--synthetic", "--stream", "../x"], "stream name"),
        (vec!["--ingest-key", "k", "--key", "/nonexistent/origin.key"], "key file"),
        (vec!["--synthetic", "--relay", "http://127.0.0.1:9/x.m3u8"], "choose one"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .arg("origin")
            .args(&args)
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(err.contains(needle), "{args:?}: error should mention {needle:?}: {err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("SHOAL_ORIGIN_READY"));
    }
}
