//! `shoal bench origin` runs end to end on a tiny configuration and reports sane figures
//! (the numbers themselves are recorded in docs/benchmarks.md, not asserted here).

use std::time::Duration;

use shoal_origin::bench::{run, BenchOptions};
use shoal_origin::RenditionConfig;

#[test]
fn bench_runs_and_reports() {
    let mut opts = BenchOptions {
        encode_seconds: 2.0,
        concurrency: 4,
        duration: Duration::from_millis(500),
        max_requests: 2_000,
        ..Default::default()
    };
    opts.synthetic.segment_duration_s = 1.0;
    opts.synthetic.renditions =
        vec![RenditionConfig { name: "tiny".into(), width: 160, height: 90, bitrate_kbps: 150 }];
    let r = run(&opts).expect("bench runs");
    let e = r.encoder.as_ref().expect("encoder report");
    assert!((e.media_s - 2.0).abs() < 1e-9);
    assert!(e.rtf_cpu > 0.0 && e.rtf_wall > 0.0);
    assert_eq!(e.renditions.len(), 1);
    assert!(e.renditions[0].measured_kbps > 30.0, "segments carry bytes: {:?}", e.renditions[0]);
    let b = r.baseline.as_ref().expect("baseline measured in the same run");
    for s in [&r.serve, b] {
        assert!(s.requests > 0 && s.requests <= 2_000, "{s:?}");
        assert_eq!(s.errors, 0, "{s:?}");
        assert!(s.bytes >= s.requests * 1_000, "whole segments fetched: {s:?}");
        assert!(s.p50_ms <= s.p99_ms && s.p99_ms <= s.max_ms);
        assert!(s.mean_segment_bytes > 1_000.0);
        assert!(s.server_cores.is_some_and(|c| c > 0.0), "server CPU measured: {s:?}");
        assert!(s.gbit_per_server_core.is_some_and(|g| g > 0.0));
    }
    // Byte ranges: every request gets exactly the range, from both servers.
    opts.range = 1024;
    opts.skip_encoder = false;
    let r2 = run(&opts).expect("bench runs with ranges");
    for s in [&r2.serve, r2.baseline.as_ref().expect("baseline")] {
        assert!(s.requests > 0 && s.errors == 0, "{s:?}");
        assert_eq!(s.bytes, s.requests * 1024, "ranges, not whole segments: {s:?}");
    }
    let text = r.render();
    assert!(
        text.contains("real-time factor") && text.contains("req/s") && text.contains("origin / baseline"),
        "{text}"
    );
}
