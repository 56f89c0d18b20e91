//! Playlist rewriting for the local proxy. Playlists are parsed with m3u8-rs (to know the
//! variants, sequence numbers and durations) and rewritten line by line, so every tag the
//! origin wrote reaches the player unchanged; only URIs move.

use shoal_engine::ListedSegment;

use crate::msg::RenditionInfo;

/// Largest playlist the proxy reads.
pub const MAX_PLAYLIST: usize = 512 * 1024;

fn resolve(base: &str, uri: &str) -> String {
    reqwest::Url::parse(base)
        .and_then(|b| b.join(uri))
        .map(|u| u.to_string())
        .unwrap_or_else(|_| uri.to_owned())
}

/// A rendition name for a variant URI: its directory (`720p/index.m3u8` → `720p`) or its file
/// stem (`low.m3u8` → `low`), if that is a valid name not taken yet; else `v{i}`.
pub fn rendition_name(uri: &str, i: usize, taken: &[String]) -> String {
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let cand = match parts.as_slice() {
        [.., dir, file] if file.ends_with(".m3u8") && !matches!(*dir, "." | "..") => dir.to_string(),
        [.., file] => file.trim_end_matches(".m3u8").to_owned(),
        [] => String::new(),
    };
    if shoal_proto::ids::valid_name(&cand) && !taken.contains(&cand) && cand != "master.m3u8" {
        cand
    } else {
        format!("v{i}")
    }
}

/// Rewrite `URI="..."` attributes of a tag to absolute URLs (alternate renditions, keys, init
/// segments are fetched by the player from the CDN directly).
fn absolutize_attr(line: &str, base: &str) -> String {
    let Some(start) = line.find("URI=\"") else { return line.to_owned() };
    let from = start + 5;
    let Some(len) = line[from..].find('"') else { return line.to_owned() };
    let uri = &line[from..from + len];
    format!("{}{}{}", &line[..from], resolve(base, uri), &line[from + len..])
}

pub struct Master {
    pub renditions: Vec<RenditionInfo>,
    /// The playlist to give the player.
    pub text: String,
}

/// Rewrite a master playlist fetched from `url`: variant URIs become `{name}/index.m3u8`
/// (relative to the proxy's `/master.m3u8`). A media playlist URL gives a one-rendition master.
pub fn rewrite_master(url: &str, body: &[u8]) -> Result<Master, String> {
    let parsed = m3u8_rs::parse_playlist_res(body).map_err(|e| format!("unreadable playlist: {e:?}"))?;
    let variants = match parsed {
        m3u8_rs::Playlist::MasterPlaylist(m) => m.variants,
        m3u8_rs::Playlist::MediaPlaylist(_) => {
            let r = RenditionInfo { name: "main".into(), url: url.to_owned(), bandwidth: 0 };
            return Ok(Master {
                renditions: vec![r],
                text: "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=1\nmain/index.m3u8\n".into(),
            });
        }
    };
    let mut renditions: Vec<RenditionInfo> = Vec::new();
    for (i, v) in variants.iter().filter(|v| !v.is_i_frame).enumerate() {
        let taken: Vec<String> = renditions.iter().map(|r| r.name.clone()).collect();
        renditions.push(RenditionInfo {
            name: rendition_name(&v.uri, i, &taken),
            url: resolve(url, &v.uri),
            bandwidth: v.bandwidth.min(u32::MAX as u64) as u32,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| "playlist is not UTF-8".to_owned())?;
    let mut out = String::with_capacity(text.len() + 64);
    let mut next = 0usize;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() {
            out.push('\n');
        } else if t.starts_with('#') {
            out.push_str(&absolutize_attr(t, url));
            out.push('\n');
        } else {
            match renditions.get(next) {
                Some(r) => out.push_str(&format!("{}/index.m3u8\n", r.name)),
                None => out.push_str(&format!("{}\n", resolve(url, t))),
            }
            next += 1;
        }
    }
    Ok(Master { renditions, text: out })
}

pub struct Media {
    /// Segments for the engine; empty when they cannot be shared (byte ranges).
    pub segments: Vec<ListedSegment>,
    /// Per listed segment: sequence number, CDN URL and the proxy's file name.
    pub files: Vec<(u64, String, String)>,
    pub target_duration_ms: u64,
    pub text: String,
}

/// Rewrite a media playlist fetched from `url`: segment URIs become `{seq}.{ext}` (relative to
/// the proxy's `/{rendition}/index.m3u8`).
pub fn rewrite_media(url: &str, body: &[u8]) -> Result<Media, String> {
    let m =
        m3u8_rs::parse_media_playlist_res(body).map_err(|e| format!("unreadable media playlist: {e:?}"))?;
    let shareable = m.segments.iter().all(|s| s.byte_range.is_none());
    let mut segments = Vec::new();
    let mut files = Vec::new();
    for (i, s) in m.segments.iter().enumerate() {
        let seq = m.media_sequence + i as u64;
        let abs = resolve(url, &s.uri);
        let path = s.uri.split(['?', '#']).next().unwrap_or(&s.uri);
        let ext = path
            .rsplit('/')
            .next()
            .and_then(|f| f.rsplit_once('.'))
            .map(|(_, e)| e)
            .filter(|e| !e.is_empty() && e.len() <= 5 && e.bytes().all(|b| b.is_ascii_alphanumeric()))
            .unwrap_or("ts");
        files.push((seq, abs.clone(), format!("{seq}.{ext}")));
        if shareable {
            let duration_ms = (s.duration.max(0.0) * 1000.0).round().min(u32::MAX as f32) as u32;
            segments.push(ListedSegment { seq, url: abs, duration_ms });
        }
    }
    let text = std::str::from_utf8(body).map_err(|_| "playlist is not UTF-8".to_owned())?;
    let mut out = String::with_capacity(text.len() + 64);
    let mut next = 0usize;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() {
            out.push('\n');
        } else if t.starts_with('#') {
            out.push_str(&absolutize_attr(t, url));
            out.push('\n');
        } else {
            match files.get(next) {
                Some((_, abs, file)) => {
                    if shareable {
                        out.push_str(file);
                    } else {
                        out.push_str(abs);
                    }
                    out.push('\n');
                }
                None => out.push_str(&format!("{}\n", resolve(url, t))),
            }
            next += 1;
        }
    }
    Ok(Media { segments, files, target_duration_ms: m.target_duration.max(1) * 1000, text: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
        #EXT-X-STREAM-INF:BANDWIDTH=900000,RESOLUTION=640x360\n360p/index.m3u8\n\
        #EXT-X-STREAM-INF:BANDWIDTH=2800000\n720p/index.m3u8?tok=1\n";

    #[test]
    fn master_variants_point_at_the_proxy() {
        let m = rewrite_master("http://cdn/live/demo/master.m3u8", MASTER.as_bytes()).expect("rewrites");
        assert_eq!(m.renditions.len(), 2);
        assert_eq!(m.renditions[0].name, "360p");
        assert_eq!(m.renditions[1].url, "http://cdn/live/demo/720p/index.m3u8?tok=1");
        assert_eq!(m.renditions[1].bandwidth, 2_800_000);
        assert!(
            m.text.contains("\n360p/index.m3u8\n") && m.text.contains("\n720p/index.m3u8\n"),
            "{}",
            m.text
        );
        assert!(m.text.contains("RESOLUTION=640x360"), "tags are kept");
        let again = m3u8_rs::parse_master_playlist_res(m.text.as_bytes()).expect("still a master playlist");
        assert_eq!(again.variants.len(), 2);
    }

    #[test]
    fn media_segments_get_sequence_names() {
        let media = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n\
            #EXT-X-PROGRAM-DATE-TIME:2026-11-27T10:00:00.000Z\n#EXTINF:2.000,\nseg-a.ts\n#EXTINF:1.500,\n\
            http://other/seg-b.ts?x=1\n";
        let m = rewrite_media("http://cdn/live/demo/720p/index.m3u8", media.as_bytes()).expect("rewrites");
        assert_eq!(m.segments.len(), 2);
        assert_eq!(m.segments[0].seq, 41);
        assert_eq!(m.segments[0].url, "http://cdn/live/demo/720p/seg-a.ts");
        assert_eq!(m.segments[1].duration_ms, 1_500);
        assert_eq!(m.segments[1].url, "http://other/seg-b.ts?x=1");
        assert!(
            m.text.contains("\n41.ts\n42.ts\n") || m.text.contains("\n41.ts\n#EXTINF:1.500,\n42.ts\n"),
            "{}",
            m.text
        );
        assert!(m.text.contains("PROGRAM-DATE-TIME"));
        assert_eq!(m.target_duration_ms, 2_000);
    }

    #[test]
    fn names_and_attributes() {
        assert_eq!(rendition_name("low.m3u8", 0, &[]), "low");
        assert_eq!(rendition_name("../x/index.m3u8", 1, &[]), "x");
        assert_eq!(rendition_name("a/index.m3u8", 2, &["a".into()]), "v2");
        assert_eq!(rendition_name("we!rd/index.m3u8", 3, &[]), "v3");
        assert_eq!(
            absolutize_attr("#EXT-X-MAP:URI=\"init.mp4\"", "http://cdn/a/index.m3u8"),
            "#EXT-X-MAP:URI=\"http://cdn/a/init.mp4\""
        );
        assert!(rewrite_master("http://x/m.m3u8", b"not a playlist").is_err());
    }
}
