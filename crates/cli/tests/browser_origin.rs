//! `shoal origin`'s synthetic live stream in a real browser: headless Chromium plays the master
//! playlist with hls.js for 20 s inside a network namespace, with no stall after startup.
//! Needs root, node, Chromium and web/node_modules (`make deps`); fails, never skips, without.

use std::time::Duration;

use shoal_testkit::browser::{self, PlayConfig};
use shoal_testkit::{http, Netns, Proc, TestDir};

/// Playback observed after the first `playing` event.
const WATCH_MS: f64 = 20_000.0;
/// Startup, the observation window and margin.
const RUN: Duration = Duration::from_secs(27);

/// Waits until the first rendition's media playlist lists `n` segments, so the player starts
/// on a filled window as a viewer joining a running stream would.
fn wait_for_segments(ns: &Netns, master_url: &str, n: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(master) = http::get(Some(ns), master_url, Duration::from_secs(5)) {
            let text = master.text();
            let first = text.lines().find(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string);
            if let (200, Some(rel)) = (master.status, first) {
                let base = master_url.rsplit_once('/').map_or(master_url, |(b, _)| b);
                let media_url = if rel.starts_with("http") { rel } else { format!("{base}/{rel}") };
                if let Ok(media) = http::get(Some(ns), &media_url, Duration::from_secs(5)) {
                    last = media.text();
                    if media.status == 200 && last.matches("#EXTINF").count() >= n {
                        return Ok(());
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    anyhow::bail!(
        "no {n} segments in {master_url}'s first rendition within {timeout:?}; last playlist:\n{last}"
    )
}

#[test]
fn browser_plays_origin_synthetic_stream_without_stalls() {
    let dir = TestDir::new("browser_plays_origin_synthetic_stream").expect("test dir");
    let ns = Netns::new().expect("namespace");
    let mut origin = Proc::builder("origin", env!("CARGO_BIN_EXE_shoal"))
        .args(["origin", "--synthetic", "--listen", "127.0.0.1:0"])
        .netns(&ns)
        .log_dir(dir.path())
        .spawn()
        .expect("shoal origin starts");
    let ready = origin.wait_ready("ORIGIN", Duration::from_secs(60)).expect("origin ready");
    // SHOAL_ORIGIN_READY <base> <master playlist URL>
    let master = ready.fields.get(1).cloned().expect("readiness line names the master playlist");
    assert!(master.starts_with(&ready.url) && master.ends_with("master.m3u8"), "{}", ready.line);
    wait_for_segments(&ns, &master, 3, Duration::from_secs(30)).expect("origin publishes segments");

    let mut cfg = PlayConfig::new(&master, RUN, 1);
    let shot_at = u64::try_from(RUN.as_millis()).expect("27 s fits in u64") - 3_000;
    cfg.viewers[0].screenshots_at_ms = vec![shot_at];
    let report = browser::play(&ns, &dir, "play", &cfg).expect("browser run");
    let v = report.viewer("v0").expect("viewer v0");
    println!("Chromium {}: {}", report.browser_version, v.one_line());

    let problems = v.smoothness_problems();
    assert!(problems.is_empty(), "playback was not smooth: {problems:#?}");
    let start = v.first_playing_at_ms.expect("playback started");
    let (advanced, over) = v.advanced_between(start, start + WATCH_MS + 500.0).expect("currentTime samples");
    assert!(
        over * 1000.0 >= WATCH_MS - 500.0,
        "observed only {over:.1} s of playback (startup {:?} ms)",
        v.startup_ms
    );
    assert!(advanced >= 15.0, "currentTime advanced {advanced:.2} s in {over:.1} s");

    let startup = v.startup_ms.expect("startup measured");
    let (_, hls_latency, _) = v.summary(|s| s.latency).expect("hls.js latency samples");
    let pdt_latency = v.summary(|s| s.pdt_latency).map(|(_, mean, _)| mean);
    println!(
        "startup {startup:.0} ms; latency behind live: hls.js {hls_latency:.2} s, PROGRAM-DATE-TIME {}",
        pdt_latency.map_or("n/a (no PDT in playlist)".to_string(), |l| format!("{l:.2} s"))
    );
    assert!(startup < 10_000.0, "startup took {startup:.0} ms");
    assert!((0.0..30.0).contains(&hls_latency), "hls.js latency {hls_latency:.2} s");

    // The picture is the synthetic pattern, not black or one flat colour.
    let frame = v.frame.expect("frame stats at the end");
    assert!(frame.distinct_colours >= 8 && frame.mean_luma > 10.0, "video frame looks blank: {frame:?}");
    let shot = v.screenshots.first().expect("screenshot taken");
    browser::check_png(&shot.path).expect("screenshot saved");
    println!("screenshot: {}", shot.path.display());

    assert!(
        origin.try_exit().expect("origin status").is_none(),
        "origin exited during playback\n{}",
        origin.log_tails()
    );
}
