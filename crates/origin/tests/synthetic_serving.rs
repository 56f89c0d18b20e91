//! The synthetic source served over real HTTP: playlists parse and slide with consistent
//! sequence numbers, both renditions decode with ffprobe with continuous timestamps and a
//! keyframe at every segment start, segments carry their bitrate, the signed manifest
//! verifies and any flipped byte fails, and the HTTP details (HEAD, ETag, Range, CORS,
//! caching, bad paths) hold.

mod common;

use std::time::Duration;

use common::*;
use shoal_origin::OriginConfig;
use shoal_proto::manifest::{verifying_key_from_b64, SignedManifest};

const FPS: u32 = 30;

fn config() -> OriginConfig {
    let mut c = OriginConfig { window: 3, manifest_window: 2, ..Default::default() };
    c.synthetic.enabled = true;
    c.synthetic.segment_duration_s = 1.0;
    c.synthetic.fps = FPS;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthetic_stream_is_valid_hls_signed_and_decodable() {
    require("ffprobe");
    let o = start(config()).await;
    assert!(o.origin.wait_synthetic_ready(Duration::from_secs(30)).await, "first segments within 30 s");
    let live = format!("{}/live/demo", o.base);

    // Master playlist: both renditions with BANDWIDTH, RESOLUTION, CODECS.
    let (status, body) = get_bytes(&format!("{live}/master.m3u8")).await;
    assert_eq!(status, 200);
    let master = m3u8_rs::parse_master_playlist_res(&body).expect("master parses");
    assert_eq!(master.variants.len(), 2);
    let v360 = &master.variants[0];
    let v720 = &master.variants[1];
    assert_eq!(v360.uri, "360p/index.m3u8");
    assert_eq!(v720.uri, "720p/index.m3u8");
    assert_eq!(v360.resolution.map(|r| (r.width, r.height)), Some((640, 360)));
    assert_eq!(v720.resolution.map(|r| (r.width, r.height)), Some((1280, 720)));
    assert!(v360.codecs.as_deref().is_some_and(|c| c.starts_with("avc1.42")), "codecs {:?}", v360.codecs);
    assert!(v720.bandwidth > v360.bandwidth && v360.bandwidth >= 800_000);

    // Playlists slide: observe several updates, check the window and the numbering.
    let urls = [format!("{live}/360p/index.m3u8"), format!("{live}/720p/index.m3u8")];
    let first = media_playlist(&urls[1]).await;
    let start_seq = first.media_sequence;
    let mut last_seq = [0u64; 2];
    let mut seen_advance = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        for (i, url) in urls.iter().enumerate() {
            let pl = media_playlist(url).await;
            assert!(pl.segments.len() <= 3, "window of 3, got {}", pl.segments.len());
            assert_eq!(pl.target_duration, 1);
            assert!(pl.media_sequence >= last_seq[i], "media sequence went back");
            last_seq[i] = pl.media_sequence;
            for (k, s) in pl.segments.iter().enumerate() {
                assert_eq!(
                    s.uri,
                    format!("{}.ts", pl.media_sequence + k as u64),
                    "URIs are the sequence numbers"
                );
                assert!((s.duration - 1.0).abs() < 1e-3);
                assert!(s.program_date_time.is_some(), "every segment has PROGRAM-DATE-TIME");
            }
            // PDTs advance by the segment duration.
            for w in pl.segments.windows(2) {
                let d = w[1].program_date_time.expect("pdt").timestamp_millis()
                    - w[0].program_date_time.expect("pdt").timestamp_millis();
                assert_eq!(d, 1000);
            }
        }
        if last_seq.iter().all(|&s| s >= start_seq + 3) {
            seen_advance = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(seen_advance, "playlists slid by 3 segments within 30 s (at {last_seq:?}, started {start_seq})");

    // Three consecutive segments present in both renditions.
    let p360 = media_playlist(&urls[0]).await;
    let p720 = media_playlist(&urls[1]).await;
    let common_first = p360.media_sequence.max(p720.media_sequence);
    let common_last = (p360.media_sequence + p360.segments.len() as u64)
        .min(p720.media_sequence + p720.segments.len() as u64)
        - 1;
    assert!(common_last > common_first, "renditions share segments");
    // Same sequence number, same program-date-time in both renditions (aligned).
    let pdt = |pl: &m3u8_rs::MediaPlaylist, seq: u64| {
        pl.segments[(seq - pl.media_sequence) as usize].program_date_time
    };
    assert_eq!(pdt(&p360, common_first), pdt(&p720, common_first));

    let dir = tempfile::tempdir().expect("tempdir");
    let seqs: Vec<u64> = (common_first..=common_last).collect();
    let mut first_pts = Vec::new();
    for (rend, (w, h, kbps)) in [("360p", (640, 360, 800.0)), ("720p", (1280, 720, 2500.0))] {
        let mut concat = Vec::new();
        for &seq in &seqs {
            let (status, data) = get_bytes(&format!("{live}/{rend}/{seq}.ts")).await;
            assert_eq!(status, 200, "{rend}/{seq}.ts");
            // Real bitrate: the encoder spends its budget (P2P offload is measured in bytes).
            let measured = data.len() as f64 * 8.0 / 1000.0;
            assert!(
                measured > kbps * 0.6 && measured < kbps * 1.6,
                "{rend}/{seq}: {measured:.0} kbit/s for a {kbps} kbit/s target"
            );
            let path = dir.path().join(format!("{rend}-{seq}.ts"));
            std::fs::write(&path, &data).expect("write");
            let (codec, dw, dh, frames) = decode(&path);
            assert_eq!(
                (codec.as_str(), dw, dh, frames),
                ("h264", w, h, u64::from(FPS)),
                "{rend}/{seq} decodes alone"
            );
            concat.extend_from_slice(&data);
        }
        let path = dir.path().join(format!("{rend}-concat.ts"));
        std::fs::write(&path, &concat).expect("write");
        let pk = video_packets(&path);
        assert_eq!(pk.len(), seqs.len() * FPS as usize);
        for (i, w) in pk.windows(2).enumerate() {
            assert_eq!(
                w[1].0 - w[0].0,
                90_000 / i64::from(FPS),
                "{rend}: PTS step at packet {i} (segment boundary every {FPS})"
            );
        }
        for (i, (_, key)) in pk.iter().enumerate() {
            assert_eq!(
                *key,
                i % FPS as usize == 0,
                "{rend}: keyframe exactly at each segment start (packet {i})"
            );
        }
        first_pts.push(pk[0].0);
    }
    assert_eq!(first_pts[0], first_pts[1], "both renditions start segment {} at the same PTS", seqs[0]);

    // Signed manifest: verifies with the published key; segments match it chunk by chunk.
    let (_, pub_b64) = get_bytes(&format!("{}/.well-known/shoal/origin.pub", o.base)).await;
    let key = verifying_key_from_b64(std::str::from_utf8(&pub_b64).expect("utf-8")).expect("public key");
    let (status, mtext) = get_bytes(&format!("{live}/720p/manifest.json")).await;
    assert_eq!(status, 200);
    let m = SignedManifest::from_json(&mtext).expect("manifest parses");
    assert_eq!((m.stream.as_str(), m.rendition.as_str()), ("demo", "720p"));
    assert_eq!(m.segments.len(), 2, "manifest_window 2");
    m.verify_all(&key).expect("manifest verifies");
    let e = m.segments.last().expect("entry");
    let (status, seg) = get_bytes(&format!("{live}/720p/{}", e.uri)).await;
    assert_eq!(status, 200);
    assert!(e.verify_segment(&seg));
    for i in 0..e.chunk_count() {
        let (a, b) = e.chunk_range(i);
        assert!(e.verify_chunk(i, &seg[a as usize..b as usize]), "chunk {i}");
    }
    let mut bad = seg.to_vec();
    bad[seg.len() / 2] ^= 0x01;
    assert!(!e.verify_segment(&bad), "flipped segment byte fails the segment hash");
    let idx = (seg.len() / 2) / e.chunk_size as usize;
    let (a, b) = e.chunk_range(idx);
    assert!(!e.verify_chunk(idx, &bad[a as usize..b as usize]), "and its chunk hash");
    // Every byte of the first entry, flipped, breaks parsing or verification.
    let text = mtext.to_vec();
    let start = text.windows(13).position(|w| w == b"\"segments\":[{").expect("segments array") + 12;
    let end = start + text[start..].iter().position(|&c| c == b'}').expect("entry end") + 1;
    for p in start..end {
        let mut t = text.clone();
        t[p] ^= 0x01;
        let ok = SignedManifest::from_json(&t).and_then(|m| m.verify_all(&key)).is_ok();
        assert!(!ok, "flipping manifest byte {p} ({:?}) went unnoticed", text[p] as char);
    }

    // HTTP details on a segment.
    let url = format!("{live}/720p/{}", e.uri);
    let c = client();
    let r = c.get(&url).header("origin", "https://viewer.example").send().await.expect("get");
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["content-type"], "video/mp2t");
    assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["access-control-allow-origin"], "*");
    let etag = h["etag"].to_str().expect("etag").to_owned();
    let r = c.head(&url).send().await.expect("head");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"].to_str().expect("len"), seg.len().to_string());
    assert!(r.bytes().await.expect("body").is_empty(), "HEAD has no body");
    let r = c.get(&url).header("if-none-match", &etag).send().await.expect("conditional");
    assert_eq!(r.status(), 304);
    // Range: exactly chunk 1, which then verifies on its own.
    let r = c.get(&url).header("range", "bytes=16000-31999").send().await.expect("range");
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"].to_str().expect("cr"),
        format!("bytes 16000-31999/{}", seg.len())
    );
    let part = r.bytes().await.expect("body");
    assert!(e.verify_chunk(1, &part));
    let r = c.get(&url).header("range", "bytes=-100").send().await.expect("suffix range");
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().await.expect("body")[..], &seg[seg.len() - 100..]);
    let r = c.get(&url).header("range", format!("bytes={}-", seg.len())).send().await.expect("bad range");
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"].to_str().expect("cr"), format!("bytes */{}", seg.len()));
    // If-Range with a stale validator: the whole segment.
    let r = c
        .get(&url)
        .header("range", "bytes=0-9")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .expect("if-range");
    assert_eq!(r.status(), 200);
    // CORS preflight for a Range request.
    let r = c
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://viewer.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "range")
        .send()
        .await
        .expect("preflight");
    assert!(r.status().is_success());
    assert!(r.headers()["access-control-allow-headers"].to_str().expect("h").contains("range"));
    // Playlists: short cache, ETag, 304.
    let r = c.get(&urls[0]).send().await.expect("playlist");
    assert_eq!(r.headers()["content-type"], "application/vnd.apple.mpegurl");
    assert_eq!(r.headers()["cache-control"], "public, max-age=1");
    let r = c.get(format!("{live}/720p/manifest.json")).send().await.expect("manifest");
    assert_eq!(r.headers()["cache-control"], "public, max-age=1");
    assert_eq!(r.headers()["content-type"], "application/json");

    // Bad paths get clear errors, never cached (sent raw: no client-side normalisation).
    for (path, want) in [
        ("/live/demo/%2e%2e/index.m3u8", 400),
        ("/live/demo/..%2F..%2Fetc/index.m3u8", 400),
        ("/live/%2e%2e/master.m3u8", 400),
        ("/live/demo/../../etc/passwd", 400),
        ("/live/demo/720p/x/y.ts", 400),
        ("/live/demo/720p/12ab.ts", 404),
        ("/live/demo/720p/1.ts", 404),
        ("/live/nosuch/master.m3u8", 404),
        ("/live/demo/4k/index.m3u8", 404),
    ] {
        let (status, head) = raw_request(&o.base, "GET", path, &[], b"").await;
        assert_eq!(status, want, "{path}: {head}");
        assert!(head.to_ascii_lowercase().contains("cache-control: no-store"), "{path}: {head}");
    }
    let (status, health) = get_bytes(&format!("{}/health", o.base)).await;
    assert_eq!(status, 200);
    let h: serde_json::Value = serde_json::from_slice(&health).expect("health json");
    assert_eq!(h["status"], "ok");
    // Memory stays bounded: (window 3 + 4 retained) segments per rendition at most.
    assert!(
        o.origin.store.memory_bytes() < 7 * (320_000 + 100_000) * 2,
        "memory {}",
        o.origin.store.memory_bytes()
    );
}
