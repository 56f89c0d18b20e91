//! ffprobe reads the live stream through `shoal play`'s local proxy: the rewritten master and
//! media playlists and the segments the engine delivers are real, decodable HLS.

mod native_common;

use std::process::Command;
use std::time::Duration;

use native_common::*;
use shoal_testkit::TestDir;

#[test]
fn native_ffprobe_reads_the_stream_through_the_proxy() {
    let dir = TestDir::new("native_ffprobe").expect("test dir");
    let stack = start_stack(dir.path(), None, "127.0.0.1", "360p:640x360@800").expect("origin and servers");
    let mut p = shoal_testkit::Proc::builder("play", SHOAL)
        .args(["play", &stack.master, "--api", &stack.api, "--udp", "127.0.0.1:0", "--status-every", "0"])
        .log_dir(dir.path())
        .spawn()
        .expect("shoal play starts");
    let ready = p.wait_ready("PLAY", Duration::from_secs(30)).expect("ready line");
    assert!(
        ready.url.starts_with("http://127.0.0.1:") && ready.url.ends_with("/master.m3u8"),
        "{}",
        ready.line
    );

    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "20000000",
            "-show_entries",
            "stream=codec_type,codec_name,width,height",
        ])
        .args(["-of", "json", &ready.url])
        .output()
        .expect("ffprobe runs (apt-get install ffmpeg)");
    assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let video =
        streams.iter().find(|s| s["codec_type"] == "video").unwrap_or_else(|| panic!("no video stream: {v}"));
    assert_eq!(video["codec_name"], "h264", "{v}");
    assert_eq!(video["width"], 640, "{v}");
    assert_eq!(video["height"], 360, "{v}");

    // ffprobe's segment requests went through the engine, not around it.
    let _ = p.stop(Duration::from_secs(5));
    let log = std::fs::read_to_string(p.stdout_path()).expect("stdout log");
    let line = log.lines().find(|l| l.starts_with("SHOAL_PLAY_SUMMARY ")).expect("summary on SIGTERM");
    let s: serde_json::Value =
        serde_json::from_str(line.trim_start_matches("SHOAL_PLAY_SUMMARY ")).expect("JSON");
    assert!(u(&s, &["stats", "delivered"]) >= 1, "{s}");
    assert!(u(&s, &["stats", "segments_verified"]) >= 1, "{s}");
    assert_eq!(u(&s, &["stats", "proxy_fallbacks"]), 0, "{s}");
}
