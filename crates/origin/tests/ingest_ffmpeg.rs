//! ffmpeg pushes HLS over HTTP PUT; the origin republishes it under its own numbering, signed.
//! Bad input (wrong key, malformed or oversized segments, broken playlists, paths outside a
//! stream, another source's stream) is refused with a clear status and changes nothing.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use shoal_origin::{OriginConfig, SourceKind};
use shoal_proto::manifest::SignedManifest;

const KEY: &str = "s3cret-ingest";

fn config() -> OriginConfig {
    let mut c = OriginConfig { window: 4, ..Default::default() };
    c.ingest.key = Some(KEY.into());
    c.ingest.max_segment_bytes = 2_000_000;
    c
}

/// ffmpeg pushing `seconds` of a test pattern (+ a tone) as 1 s HLS segments.
fn ffmpeg_push(args_after_input: &[&str], url: &str, seconds: u32) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", &format!("testsrc2=size=320x240:rate=25:duration={seconds}")])
        .args(["-f", "lavfi", "-i", &format!("sine=frequency=440:sample_rate=48000:duration={seconds}")])
        .args(args_after_input)
        .args(["-f", "hls", "-hls_time", "1", "-hls_list_size", "3", "-method", "PUT"])
        .args(["-headers", &format!("X-Shoal-Ingest-Key: {KEY}\r\n")])
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().expect("ffmpeg starts")
}

const X264: [&str; 14] = [
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
    "-c:a",
    "aac",
    "-b:a",
    "64k",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_put_ingest_is_republished_signed_and_decodable() {
    require("ffmpeg");
    require("ffprobe");
    let o = start(config()).await;
    let ff = ffmpeg_push(&X264, &format!("{}/ingest/cam/index.m3u8", o.base), 7);
    let url = format!("{}/live/cam/src/index.m3u8", o.base);
    // Every uploaded segment ends up published: 7 s of 1 s segments, window of 4.
    let pl = wait_playlist(&url, Duration::from_secs(30), |p| p.segments.len() >= 4).await;
    let out = tokio::time::timeout(Duration::from_secs(30), ff.wait_with_output())
        .await
        .expect("ffmpeg ends")
        .expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    let fin = wait_playlist(&url, Duration::from_secs(10), |p| p.end_list).await;
    assert!(fin.media_sequence > pl.media_sequence, "the window slid while ffmpeg pushed");
    assert!(fin.end_list, "ffmpeg's final playlist ends the stream; so does ours");
    assert_eq!(fin.segments.len(), 4);
    for (k, s) in fin.segments.iter().enumerate() {
        assert_eq!(s.uri, format!("{}.ts", fin.media_sequence + k as u64));
        assert!(s.program_date_time.is_some());
        assert!(s.duration > 0.5 && s.duration < 1.5, "duration {}", s.duration);
    }
    // The origin's numbering starts at the Unix second it first saw the stream, never at 0.
    assert!(fin.media_sequence > 1_700_000_000);

    let (status, master) = get_bytes(&format!("{}/live/cam/master.m3u8", o.base)).await;
    assert_eq!(status, 200);
    let m = m3u8_rs::parse_master_playlist_res(&master).expect("master parses");
    assert_eq!(m.variants.len(), 1);
    assert_eq!(m.variants[0].uri, "src/index.m3u8");
    assert_eq!(m.variants[0].resolution.map(|r| (r.width, r.height)), Some((320, 240)));
    let codecs = m.variants[0].codecs.clone().unwrap_or_default();
    assert!(codecs.starts_with("avc1.") && codecs.ends_with(",mp4a.40.2"), "codecs {codecs}");

    let (_, mtext) = get_bytes(&format!("{}/live/cam/src/manifest.json", o.base)).await;
    let man = SignedManifest::from_json(&mtext).expect("manifest parses");
    man.verify_all(&o.origin.store.verifying_key()).expect("manifest verifies");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut concat = Vec::new();
    for s in &fin.segments {
        let (status, data) = get_bytes(&format!("{}/live/cam/src/{}", o.base, s.uri)).await;
        assert_eq!(status, 200);
        if let Some(e) = man.segments.iter().find(|e| e.uri == s.uri) {
            assert!(e.verify_segment(&data), "{} matches its signed entry", s.uri);
        }
        let p = dir.path().join(&s.uri);
        std::fs::write(&p, &data).expect("write");
        let (codec, w, h, frames) = decode(&p);
        assert_eq!((codec.as_str(), w, h), ("h264", 320, 240));
        assert!(frames >= 20, "{frames} frames in {}", s.uri);
        concat.extend_from_slice(&data);
    }
    // ffmpeg's timestamps pass through untouched: continuous across our segments.
    let p = dir.path().join("concat.ts");
    std::fs::write(&p, &concat).expect("write");
    let pk = video_packets(&p);
    assert!(pk.len() >= 80);
    let mut sorted: Vec<i64> = pk.iter().map(|x| x.0).collect();
    sorted.sort_unstable();
    for w in sorted.windows(2) {
        assert_eq!(w[1] - w[0], 3600, "25 fps, no gap at segment boundaries");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_multi_rendition_ingest_is_aligned() {
    require("ffmpeg");
    let o = start(config()).await;
    let args = [
        "-map",
        "0:v",
        "-map",
        "0:v",
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
        "-s:v:0",
        "192x108",
        "-b:v:0",
        "200k",
        "-s:v:1",
        "320x180",
        "-b:v:1",
        "400k",
        "-var_stream_map",
        "v:0,name:low v:1,name:high",
        "-master_pl_name",
        "master.m3u8",
    ];
    let mut ff = ffmpeg_push(&args, &format!("{}/ingest/multi/%v/index.m3u8", o.base), 5);
    let low = wait_playlist(&format!("{}/live/multi/low/index.m3u8", o.base), Duration::from_secs(30), |p| {
        p.segments.len() >= 3
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(30), ff.wait()).await;
    // ffmpeg exits without waiting for answers: wait until both final playlists are in.
    let ended = |p: &m3u8_rs::MediaPlaylist| p.end_list;
    let high =
        wait_playlist(&format!("{}/live/multi/high/index.m3u8", o.base), Duration::from_secs(10), ended)
            .await;
    let low_fin =
        wait_playlist(&format!("{}/live/multi/low/index.m3u8", o.base), Duration::from_secs(10), ended).await;
    assert!(low.segments.len() >= 3);
    assert_eq!(
        high.media_sequence, low_fin.media_sequence,
        "renditions share the origin's numbering: {high:?}\n{low_fin:?}"
    );
    assert_eq!(high.segments.len(), low_fin.segments.len());
    let (status, master) = get_bytes(&format!("{}/live/multi/master.m3u8", o.base)).await;
    assert_eq!(status, 200);
    let m = m3u8_rs::parse_master_playlist_res(&master).expect("master parses");
    let mut uris: Vec<&str> = m.variants.iter().map(|v| v.uri.as_str()).collect();
    uris.sort_unstable();
    assert_eq!(uris, ["high/index.m3u8", "low/index.m3u8"]);
    let hv = m.variants.iter().find(|v| v.uri.starts_with("high")).expect("high");
    assert_eq!(
        hv.resolution.map(|r| (r.width, r.height)),
        Some((320, 180)),
        "declared by ffmpeg's master playlist"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ingest_is_refused_and_changes_nothing() {
    require("ffmpeg");
    let o = start(config()).await;
    let key = ("X-Shoal-Ingest-Key", KEY);
    // One good segment published first, so there is something to protect.
    let dir = tempfile::tempdir().expect("tempdir");
    let seg_path = dir.path().join("good.ts");
    let st = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=25:duration=1",
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-f", "mpegts"])
        .arg(&seg_path)
        .status()
        .expect("ffmpeg");
    assert!(st.success());
    let good = std::fs::read(&seg_path).expect("segment");
    let pl = |names: &[&str]| {
        let mut s =
            String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n");
        for n in names {
            s.push_str(&format!("#EXTINF:1.000,\n{n}\n"));
        }
        s
    };
    assert_eq!(raw_request(&o.base, "PUT", "/ingest/cam/s0.ts", &[key], &good).await.0, 201);
    assert_eq!(
        raw_request(&o.base, "PUT", "/ingest/cam/index.m3u8", &[key], pl(&["s0.ts"]).as_bytes()).await.0,
        204
    );
    let url = format!("{}/live/cam/src/index.m3u8", o.base);
    let before = get_bytes(&url).await;
    assert_eq!(before.0, 200);
    let before_manifest = get_bytes(&format!("{}/live/cam/src/manifest.json", o.base)).await;

    // (what, path, headers, body, expected status)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        ("no key", "/ingest/cam/s1.ts", vec![], good.clone(), 401),
        ("wrong key", "/ingest/cam/s1.ts", vec![("X-Shoal-Ingest-Key", "guess")], good.clone(), 401),
        ("wrong key in query", "/ingest/cam/s1.ts?key=guess", vec![], good.clone(), 401),
        ("not TS", "/ingest/cam/s1.ts", vec![key], b"<html>hello</html>".to_vec(), 400),
        ("truncated TS", "/ingest/cam/s1.ts", vec![key], good[..good.len() - 100].to_vec(), 400),
        ("oversized", "/ingest/cam/s1.ts", vec![key], vec![0x47; 2_000_188], 413),
        ("broken playlist", "/ingest/cam/index.m3u8", vec![key], b"not a playlist".to_vec(), 400),
        ("other type", "/ingest/cam/s1.mp4", vec![key], good.clone(), 415),
        ("dot-dot stream", "/ingest/%2e%2e/index.m3u8", vec![key], pl(&[]).into_bytes(), 400),
        ("traversal", "/ingest/cam/..%2F..%2Fx/s.ts", vec![key], good.clone(), 400),
        ("too deep", "/ingest/cam/a/b/s.ts", vec![key], good.clone(), 400),
        ("bad rendition", "/ingest/cam/.hidden/s.ts", vec![key], good.clone(), 400),
    ];
    for (what, path, headers, body, want) in cases {
        let (status, head) = raw_request(&o.base, "PUT", path, &headers, &body).await;
        assert_eq!(status, want, "{what}: {head}");
    }
    // The key in the query string works too.
    assert_eq!(raw_request(&o.base, "PUT", &format!("/ingest/cam/s1.ts?key={KEY}"), &[], &good).await.0, 201);
    // A playlist naming a segment nobody uploaded publishes nothing.
    assert_eq!(
        raw_request(&o.base, "PUT", "/ingest/cam/index.m3u8", &[key], pl(&["s0.ts", "ghost.ts"]).as_bytes())
            .await
            .0,
        204
    );
    assert_eq!(get_bytes(&url).await, before, "published playlist unchanged");
    assert_eq!(get_bytes(&format!("{}/live/cam/src/manifest.json", o.base)).await, before_manifest);

    // Ingest into a stream another source publishes: conflict.
    o.origin.store.open_stream("demo", SourceKind::Synthetic).expect("open");
    assert_eq!(raw_request(&o.base, "PUT", "/ingest/demo/s0.ts", &[key], &good).await.0, 409);

    // With no ingest key configured, ingest is off.
    let off = start(OriginConfig::default()).await;
    assert_eq!(raw_request(&off.base, "PUT", "/ingest/cam/s0.ts", &[key], &good).await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_ffmpeg_continues_numbering_with_a_discontinuity() {
    require("ffmpeg");
    let o = start(config()).await;
    let url = format!("{}/live/re/src/index.m3u8", o.base);
    let push = format!("{}/ingest/re/index.m3u8", o.base);
    let first = ffmpeg_push(&X264, &push, 3);
    let _ = tokio::time::timeout(Duration::from_secs(30), first.wait_with_output())
        .await
        .expect("first push ends");
    let one = wait_playlist(&url, Duration::from_secs(10), |p| p.end_list).await;
    let last_one = one.media_sequence + one.segments.len() as u64 - 1;
    // ffmpeg starts again at media sequence 0 with the same file names.
    let second = ffmpeg_push(&X264, &push, 3);
    let _ = tokio::time::timeout(Duration::from_secs(30), second.wait_with_output())
        .await
        .expect("second push ends");
    let two = wait_playlist(&url, Duration::from_secs(10), |p| {
        p.end_list && p.media_sequence + p.segments.len() as u64 - 1 > last_one + 1
    })
    .await;
    assert!(two.segments.len() <= 4);
    let first_new = two.media_sequence
        + two.segments.iter().position(|s| s.discontinuity).expect("a discontinuity marks the restart")
            as u64;
    assert_eq!(first_new, last_one + 1, "numbering continues right after the first push");
    for (k, s) in two.segments.iter().enumerate() {
        assert_eq!(s.uri, format!("{}.ts", two.media_sequence + k as u64));
    }
    let (_, mtext) = get_bytes(&format!("{}/live/re/src/manifest.json", o.base)).await;
    SignedManifest::from_json(&mtext)
        .expect("manifest")
        .verify_all(&o.origin.store.verifying_key())
        .expect("verifies");
}
