//! `shoal origin --relay` of a second `shoal origin --synthetic`: same sequence numbers,
//! byte-identical segments, signed with the relay's own key.

mod origin_common;

use std::time::Duration;

use origin_common::*;
use shoal_proto::SignedManifest;
use shoal_testkit::TestDir;

#[test]
fn relay_mode_from_a_second_origin() {
    let dir = TestDir::new("origin_relay").expect("test dir");
    let a = start(
        &dir,
        "upstream",
        &[
            "--synthetic",
            "--listen",
            "127.0.0.1:0",
            "--stream",
            "up",
            "--segment-duration",
            "1",
            "--ladder",
            "low:192x108@200,mid:320x180@400",
        ],
    );
    let b = start(
        &dir,
        "relay",
        &["--relay", &a.master, "--listen", "127.0.0.1:0", "--stream", "down", "--window", "4"],
    );
    assert_ne!(a.public_b64, b.public_b64);
    let b_pl = format!("{}/live/down/mid/index.m3u8", b.base);
    let (seq, uris) = wait_segments(&b_pl, 3, Duration::from_secs(40));
    let (a_seq, a_uris) = segments(&format!("{}/live/up/mid/index.m3u8", a.base));
    assert!(a_seq <= seq && seq < a_seq + 10, "same numbering: upstream {a_seq}, relay {seq}");
    let shared: Vec<&String> = uris.iter().filter(|u| a_uris.contains(u)).collect();
    assert!(!shared.is_empty(), "relay {uris:?} vs upstream {a_uris:?}");
    for u in shared {
        let x = get(&format!("{}/live/up/mid/{u}", a.base));
        let y = get(&format!("{}/live/down/mid/{u}", b.base));
        assert_eq!((x.status, y.status), (200, 200));
        assert!(x.body == y.body, "{u} differs through the relay");
    }
    let master = get(&b.master).text();
    assert!(master.contains("low/index.m3u8") && master.contains("mid/index.m3u8"), "{master}");
    let m = SignedManifest::from_json(&get(&format!("{}/live/down/mid/manifest.json", b.base)).body)
        .expect("manifest");
    m.verify_all(&b.public_key).expect("relay's own signature");
    assert!(m.verify_all(&a.public_key).is_err());
}
