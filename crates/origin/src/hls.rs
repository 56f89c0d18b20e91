//! Playlist text. Written by hand (not through a playlist library) so the exact tags are
//! visible here; tests parse the output with m3u8-rs.

use std::fmt::Write as _;

use crate::clock::rfc3339_ms;
use crate::store::Segment;

pub struct MediaPlaylist<'a> {
    pub target_duration_s: u64,
    pub discontinuity_seq: u64,
    pub independent: bool,
    pub ended: bool,
    /// The segments to list, ascending.
    pub segments: &'a [&'a Segment],
}

/// A live media playlist: `#EXT-X-MEDIA-SEQUENCE` is the first listed segment's sequence
/// number, every segment carries `#EXT-X-PROGRAM-DATE-TIME`, URIs are `{seq}.ts`.
pub fn media_playlist(p: &MediaPlaylist<'_>) -> String {
    let mut s = String::with_capacity(128 + p.segments.len() * 96);
    s.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
    let _ = writeln!(s, "#EXT-X-TARGETDURATION:{}", p.target_duration_s.max(1));
    let _ = writeln!(s, "#EXT-X-MEDIA-SEQUENCE:{}", p.segments.first().map(|x| x.seq).unwrap_or(0));
    if p.discontinuity_seq > 0 {
        let _ = writeln!(s, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", p.discontinuity_seq);
    }
    if p.independent {
        s.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    for seg in p.segments {
        if seg.discontinuity {
            s.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let _ = writeln!(s, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339_ms(seg.pdt_ms));
        let _ = writeln!(s, "#EXTINF:{}.{:03},", seg.duration_ms / 1000, seg.duration_ms % 1000);
        let _ = writeln!(s, "{}.ts", seg.seq);
    }
    if p.ended {
        s.push_str("#EXT-X-ENDLIST\n");
    }
    s
}

pub struct Variant {
    pub uri: String,
    pub bandwidth: u64,
    pub average_bandwidth: Option<u64>,
    pub resolution: Option<(u32, u32)>,
    pub codecs: Option<String>,
    pub frame_rate: Option<f64>,
    pub independent: bool,
}

pub fn master_playlist(variants: &[Variant]) -> String {
    let mut s = String::from("#EXTM3U\n#EXT-X-VERSION:3\n");
    if !variants.is_empty() && variants.iter().all(|v| v.independent) {
        s.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    for v in variants {
        let _ = write!(s, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth);
        if let Some(a) = v.average_bandwidth {
            let _ = write!(s, ",AVERAGE-BANDWIDTH={a}");
        }
        if let Some((w, h)) = v.resolution {
            let _ = write!(s, ",RESOLUTION={w}x{h}");
        }
        if let Some(f) = v.frame_rate {
            let _ = write!(s, ",FRAME-RATE={f:.3}");
        }
        if let Some(c) = &v.codecs {
            let _ = write!(s, ",CODECS=\"{c}\"");
        }
        let _ = writeln!(s, "\n{}", v.uri);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_parses() {
        let text = master_playlist(&[
            Variant {
                uri: "360p/index.m3u8".into(),
                bandwidth: 900_000,
                average_bandwidth: Some(850_000),
                resolution: Some((640, 360)),
                codecs: Some("avc1.42c01e".into()),
                frame_rate: Some(30.0),
                independent: true,
            },
            Variant {
                uri: "720p/index.m3u8".into(),
                bandwidth: 2_800_000,
                average_bandwidth: None,
                resolution: None,
                codecs: None,
                frame_rate: None,
                independent: true,
            },
        ]);
        let m = m3u8_rs::parse_master_playlist_res(text.as_bytes()).expect("parses");
        assert_eq!(m.variants.len(), 2);
        assert_eq!(m.variants[0].bandwidth, 900_000);
        assert_eq!(m.variants[0].codecs.as_deref(), Some("avc1.42c01e"));
        assert_eq!(m.variants[0].resolution.map(|r| (r.width, r.height)), Some((640, 360)));
        assert_eq!(m.variants[1].uri, "720p/index.m3u8");
        assert!(m.independent_segments);
    }
}
