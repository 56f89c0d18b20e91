//! The browser runner against a known-good stream (ffmpeg testsrc2 HLS): proves the harness
//! apart from Shoal's origin. Needs root, node, Chromium, ffmpeg and web/node_modules.

use std::time::Duration;

use shoal_testkit::browser::{self, PlayConfig, ViewerSpec};
use shoal_testkit::media::{static_server, FfmpegLiveHls};
use shoal_testkit::{Netns, TestDir};

#[test]
fn browser_runner_plays_ffmpeg_hls_with_a_schedule() {
    let dir = TestDir::new("browser_runner_plays_ffmpeg_hls").expect("test dir");
    let ns = Netns::new().expect("namespace");
    let hls_dir = dir.subdir("hls").expect("hls dir");
    let ffmpeg = FfmpegLiveHls::start(&hls_dir, dir.path(), 3).expect("ffmpeg live HLS");
    let (_server, base) = static_server(&ns, &ffmpeg.dir, dir.path()).expect("static server");

    let mut cfg = PlayConfig::new(format!("{base}/master.m3u8"), Duration::from_secs(14), 1);
    if let Some(v0) = cfg.viewer_mut("v0") {
        v0.screenshots_at_ms = vec![12_000];
    }
    // A viewer that joins late and leaves early, as swarm tests will do.
    cfg.viewers.push(ViewerSpec { open_at_ms: 3_000, close_at_ms: Some(9_000), ..ViewerSpec::new("late") });
    let report = browser::play(&ns, &dir, "play", &cfg).expect("play.mjs ran");
    assert!(report.browser_version.starts_with(|c: char| c.is_ascii_digit()), "{}", report.browser_version);

    for v in &report.viewers {
        println!("{}", v.one_line());
        let problems = v.smoothness_problems();
        assert!(problems.is_empty(), "viewer {}: {problems:#?}", v.id);
        let startup = v.startup_ms.expect("started");
        assert!(startup < 5_000.0, "viewer {} took {startup} ms to start", v.id);
        assert!(
            v.frag_bytes > 100_000 && v.frag_count >= 2,
            "viewer {}: {} frags {} B",
            v.id,
            v.frag_count,
            v.frag_bytes
        );
        assert!(v.http.media_bytes >= v.frag_bytes, "http {} < frag {}", v.http.media_bytes, v.frag_bytes);
        assert_eq!((v.video_width, v.video_height), (640, 360));
        let frame = v.frame.expect("frame stats at close");
        assert!(frame.distinct_colours >= 8, "colour bars expected, got {frame:?}");
        // PROGRAM-DATE-TIME from ffmpeg's wall clock, same machine: a few segments behind.
        let (_, pdt_mean, _) = v.summary(|s| s.pdt_latency).expect("PDT latency samples");
        assert!((1.0..20.0).contains(&pdt_mean), "viewer {} PDT latency {pdt_mean}", v.id);
    }

    let v0 = report.viewer("v0").expect("v0");
    let start = v0.first_playing_at_ms.expect("v0 started");
    let (advanced, over) = v0.advanced_between(start + 1_000.0, 14_000.0).expect("v0 samples");
    assert!(advanced >= over - 1.0, "v0 advanced {advanced:.2} s in {over:.2} s");
    let shot = v0.screenshots.first().expect("v0 screenshot");
    browser::check_png(&shot.path).expect("screenshot is a PNG");
    assert!(shot.frame.is_some_and(|f| f.distinct_colours >= 8), "{shot:?}");

    let late = report.viewer("late").expect("late viewer");
    let opened = late.opened_at_ms.expect("late opened");
    let closed = late.closed_at_ms.expect("late closed");
    assert!((3_000.0..4_000.0).contains(&opened), "opened at {opened}");
    assert!((9_000.0..11_000.0).contains(&closed), "closed at {closed}");
    let last_sample = late.samples.last().expect("late samples").at_ms;
    assert!(last_sample < 11_000.0, "late viewer sampled after closing: {last_sample}");
}

#[test]
fn browser_runner_rejects_a_bad_config_with_the_reason() {
    let dir = TestDir::new("browser_runner_rejects_a_bad_config").expect("test dir");
    let ns = Netns::new().expect("namespace");
    let mut cfg = PlayConfig::new("http://127.0.0.1:9/master.m3u8", Duration::from_secs(5), 1);
    cfg.viewers.push(ViewerSpec::new("v0"));
    let err = browser::play(&ns, &dir, "play", &cfg).expect_err("duplicate viewer id must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains("viewer id v0 used twice"), "{msg}");
}
