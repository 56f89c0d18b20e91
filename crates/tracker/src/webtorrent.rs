//! The WebTorrent tracker protocol on `/announce`, as spoken by the `bittorrent-tracker`
//! client (and so by p2p-media-loader): announces carry pre-made WebRTC offers, the tracker
//! hands each offer to a different member of the swarm, receivers answer through it.
//!
//! Compatibility choices (see `docs/tracker-protocol.md` § WebTorrent): ids are 20-character
//! "binary strings" (code points ≤ U+00FF) used as received; `event` may be absent, `update`,
//! `paused`, `empty` or null; a reply to every announce except answers and `stopped`; errors
//! carry `action` and `info_hash` so the client attributes them. Offer receivers are chosen by
//! the same scored selection as the Shoal path (locality from the IP table; WebTorrent peers
//! report no position or NAT type).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use shoal_proto::tracker::ErrorCode;
use shoal_swarm::PeerInfo;

use crate::conn::{Cx, Fatal, Protocol};
use crate::state::{Outbound, State, SwarmKey, Via};
use crate::stats::Path;

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    action: Option<std::borrow::Cow<'a, str>>,
    info_hash: Option<OneOrMany>,
    peer_id: Option<String>,
    event: Option<String>,
    #[serde(default)]
    offers: Option<Vec<OfferIn<'a>>>,
    #[serde(borrow)]
    answer: Option<&'a RawValue>,
    to_peer_id: Option<String>,
    offer_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct OfferIn<'a> {
    #[serde(borrow)]
    offer: &'a RawValue,
    offer_id: String,
}

#[derive(Serialize)]
struct AnnounceReply<'a> {
    action: &'static str,
    interval: u64,
    info_hash: &'a str,
    complete: u32,
    incomplete: u32,
}

#[derive(Serialize)]
struct OfferOut<'a> {
    action: &'static str,
    info_hash: &'a str,
    offer_id: &'a str,
    peer_id: &'a str,
    offer: &'a RawValue,
}

#[derive(Serialize)]
struct AnswerOut<'a> {
    action: &'static str,
    info_hash: &'a str,
    peer_id: &'a str,
    answer: &'a RawValue,
    offer_id: &'a str,
}

#[derive(Serialize)]
struct Failure<'a> {
    #[serde(rename = "failure reason")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    info_hash: Option<&'a str>,
}

#[derive(Serialize)]
struct ScrapeFile {
    complete: u32,
    incomplete: u32,
    downloaded: u32,
}

#[derive(Serialize)]
struct ScrapeReply<'a> {
    action: &'static str,
    files: std::collections::BTreeMap<&'a str, ScrapeFile>,
}

/// 20 code points, each ≤ U+00FF: one byte each in the client's binary-string encoding.
fn valid_id(s: &str) -> bool {
    let mut n = 0;
    for c in s.chars() {
        if u32::from(c) > 0xFF {
            return false;
        }
        n += 1;
        if n > 20 {
            return false;
        }
    }
    n == 20
}

fn json(v: &impl Serialize) -> String {
    serde_json::to_string(v).expect("WebTorrent messages are plain data and always serialize")
}

#[derive(Default)]
pub(crate) struct WebTorrentConn {
    /// (info_hash, peer_id) this connection announced; one peer id per info hash.
    joined: Vec<(Box<str>, Box<str>)>,
    /// Action and info hash of the message being handled, for attributing a fatal error.
    current: Option<(String, String)>,
}

impl Protocol for WebTorrentConn {
    const PATH: Path = Path::WebTorrent;

    fn on_text(&mut self, cx: &mut Cx<'_>, text: &str) -> Result<(), Fatal> {
        self.current = None;
        let req: Request<'_> = serde_json::from_str(text)
            .map_err(|e| Fatal::new(ErrorCode::BadJson, format!("invalid request: {e}")))?;
        match req.action.as_deref() {
            Some("announce") => self.announce(cx, req),
            Some("scrape") => self.scrape(cx, req),
            Some(other) => {
                let other: String = other.chars().take(32).collect();
                Err(Fatal::new(ErrorCode::UnknownType, format!("invalid action {other:?}")))
            }
            None => Err(Fatal::new(ErrorCode::UnknownType, "missing action")),
        }
    }

    fn fatal_frame(&self, fatal: &Fatal) -> Option<String> {
        let (action, info_hash) = match &self.current {
            Some((a, h)) => (Some(a.as_str()), Some(h.as_str())),
            None => (None, None),
        };
        Some(json(&Failure {
            reason: &format!("{}: {}", fatal.code.as_str(), fatal.reason),
            action,
            info_hash,
        }))
    }

    fn idle_timeout_ms(&self, state: &State) -> u64 {
        if self.joined.is_empty() {
            state.cfg.handshake_timeout_ms
        } else {
            state.cfg.webtorrent_peer_timeout_ms()
        }
    }

    fn on_close(&mut self, state: &State, conn: u64) {
        for (info_hash, peer_id) in self.joined.drain(..) {
            state.leave(&SwarmKey::WebTorrent(info_hash), &peer_id, conn);
        }
    }
}

impl WebTorrentConn {
    fn announce(&mut self, cx: &mut Cx<'_>, req: Request<'_>) -> Result<(), Fatal> {
        let st = cx.state;
        let cfg = &st.cfg;
        let info_hash = match req.info_hash {
            Some(OneOrMany::One(h)) if valid_id(&h) => h,
            _ => return Err(Fatal::new(ErrorCode::BadRequest, "invalid info_hash")),
        };
        self.current = Some(("announce".into(), info_hash.clone()));
        let peer_id = match req.peer_id {
            Some(p) if valid_id(&p) => p,
            _ => return Err(Fatal::new(ErrorCode::BadRequest, "invalid peer_id")),
        };
        let key = SwarmKey::WebTorrent(info_hash.as_str().into());

        if req.event.as_deref() == Some("stopped") {
            if let Some(i) = self.joined.iter().position(|(h, p)| **h == *info_hash && **p == *peer_id) {
                self.joined.swap_remove(i);
                st.leave(&key, &peer_id, cx.route.conn);
            }
            return Ok(());
        }

        // Offers are checked before anything changes, so a bad one refuses the whole message.
        let offers = req.offers.unwrap_or_default();
        for o in offers.iter().take(cfg.webtorrent.max_offers) {
            if !valid_id(&o.offer_id) {
                return Err(Fatal::new(ErrorCode::BadRequest, "invalid offer_id"));
            }
            if o.offer.get().len() > cfg.max_signal_bytes {
                return Err(Fatal::new(ErrorCode::TooLarge, "offer too large"));
            }
        }
        let answer = match req.answer {
            Some(a) => {
                let to = match req.to_peer_id {
                    Some(t) if valid_id(&t) => t,
                    _ => {
                        return Err(Fatal::new(
                            ErrorCode::BadRequest,
                            "invalid `to_peer_id` (required with `answer`)",
                        ))
                    }
                };
                let offer_id = match req.offer_id {
                    Some(o) if valid_id(&o) => o,
                    _ => return Err(Fatal::new(ErrorCode::BadRequest, "invalid offer_id")),
                };
                if a.get().len() > cfg.max_signal_bytes {
                    return Err(Fatal::new(ErrorCode::TooLarge, "answer too large"));
                }
                Some((a, to, offer_id))
            }
            None => None,
        };

        match self.joined.iter().find(|(h, _)| **h == *info_hash) {
            Some((_, p)) if **p != *peer_id => {
                return Err(Fatal::new(ErrorCode::PeerIdChanged, "Only one peer id can be used per torrent"))
            }
            Some(_) => {}
            None => {
                if self.joined.len() >= cfg.webtorrent.max_swarms_per_connection {
                    return Err(Fatal::new(ErrorCode::BadRequest, "too many info hashes on one connection"));
                }
            }
        }

        let locality = match cx.ip {
            Some(ip) => st.locality.lookup(ip),
            None => std::sync::Arc::from(""),
        };
        let info =
            PeerInfo { locality, upload_kbps: cfg.webtorrent.assumed_upload_kbps, ..PeerInfo::default() };
        let now = st.now_ms();
        let route = Via::Local(cx.route.clone());
        let conn = cx.route.conn;
        let n_offers = offers.len().min(cfg.webtorrent.max_offers);
        let grace = cfg.departed_grace_ms;

        enum AnswerFate {
            None,
            Sent,
            Dropped,
            Gone,
            Absent,
        }
        struct Done {
            size: usize,
            relayed: u64,
            dropped: u64,
            answer: AnswerFate,
        }
        let outcome = st.with_swarm(&key, true, |s| {
            if let Some((_, r)) = s.get(&peer_id) {
                if r.conn() != Some(conn) {
                    return Err("peer_id in use by another connection");
                }
            }
            let previous = s.upsert(&peer_id, info.clone(), route, now).map_err(|_| "swarm full")?;
            let mut done = Done { size: s.len(), relayed: 0, dropped: 0, answer: AnswerFate::None };
            for (sel, offer) in s.select(&cfg.selection, &peer_id, &info, &[], n_offers).iter().zip(&offers) {
                let text = json(&OfferOut {
                    action: "announce",
                    info_hash: &info_hash,
                    offer_id: &offer.offer_id,
                    peer_id: &peer_id,
                    offer: offer.offer,
                });
                match sel.route.try_send(Outbound::Text(text)) {
                    Ok(()) => done.relayed += 1,
                    Err(_) => done.dropped += 1,
                }
            }
            if let Some((a, to, offer_id)) = &answer {
                done.answer = match s.get(to) {
                    Some((_, r)) => {
                        let text = json(&AnswerOut {
                            action: "announce",
                            info_hash: &info_hash,
                            peer_id: &peer_id,
                            answer: a,
                            offer_id,
                        });
                        match r.try_send(Outbound::Text(text)) {
                            Ok(()) => AnswerFate::Sent,
                            Err(_) => AnswerFate::Dropped,
                        }
                    }
                    None if s.recently_departed(to, now, grace) => AnswerFate::Gone,
                    None => AnswerFate::Absent,
                };
            }
            Ok((previous.is_none(), done))
        });
        let (joined_now, done) = match outcome {
            Ok(Some(Ok(r))) => r,
            Ok(Some(Err(reason))) => {
                // aquatic_ws ignores such announces; telling the client is friendlier.
                cx.out.push(json(&Failure { reason, action: Some("announce"), info_hash: Some(&info_hash) }));
                return Ok(());
            }
            Ok(None) | Err(_) => {
                return Err(Fatal::new(ErrorCode::SwarmFull, "the tracker is at its swarm limit"))
            }
        };
        if joined_now {
            st.counters.peer_joined();
        }
        if !self.joined.iter().any(|(h, _)| **h == *info_hash) {
            self.joined.push((info_hash.as_str().into(), peer_id.as_str().into()));
        }
        st.counters.relayed(Path::WebTorrent, done.relayed);
        st.counters.dropped(done.dropped);
        match done.answer {
            AnswerFate::None => {
                st.counters.announce(Path::WebTorrent);
                cx.out.push(json(&AnnounceReply {
                    action: "announce",
                    interval: cfg.webtorrent.announce_interval_s,
                    info_hash: &info_hash,
                    complete: 0,
                    incomplete: done.size as u32,
                }));
            }
            AnswerFate::Sent => st.counters.relayed(Path::WebTorrent, 1),
            AnswerFate::Dropped => st.counters.dropped(1),
            // The offerer left between its offer and this answer: nothing to do.
            AnswerFate::Gone => st.counters.reject(ErrorCode::PeerGone),
            AnswerFate::Absent => {
                return Err(Fatal::new(ErrorCode::NotInSwarm, "to_peer_id is not a member of this swarm"));
            }
        }
        Ok(())
    }

    fn scrape(&mut self, cx: &mut Cx<'_>, req: Request<'_>) -> Result<(), Fatal> {
        let hashes = match req.info_hash {
            Some(OneOrMany::One(h)) => vec![h],
            Some(OneOrMany::Many(v)) => v,
            None => return Err(Fatal::new(ErrorCode::BadRequest, "full scrapes are not allowed")),
        };
        if hashes.len() > cx.state.cfg.webtorrent.max_scrape {
            return Err(Fatal::new(ErrorCode::BadRequest, "too many info hashes in one scrape"));
        }
        let mut files = std::collections::BTreeMap::new();
        for h in &hashes {
            if !valid_id(h) {
                return Err(Fatal::new(ErrorCode::BadRequest, "invalid info_hash"));
            }
            let key = SwarmKey::WebTorrent(h.as_str().into());
            let n = cx.state.with_existing(&key, |s| s.len()).unwrap_or(0);
            files.insert(h.as_str(), ScrapeFile { complete: 0, incomplete: n as u32, downloaded: 0 });
        }
        cx.out.push(json(&ScrapeReply { action: "scrape", files }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_string_ids() {
        assert!(valid_id("-PM0203-abcdefghijkl"));
        assert!(valid_id(&"\u{ff}".repeat(20)));
        assert!(!valid_id(&"\u{100}".repeat(20)));
        assert!(!valid_id("short"));
        assert!(!valid_id(&"a".repeat(21)));
    }

    #[test]
    fn reply_shapes() {
        let r = json(&Failure { reason: "x", action: Some("announce"), info_hash: Some("h") });
        assert_eq!(r, r#"{"failure reason":"x","action":"announce","info_hash":"h"}"#);
        let r = json(&Failure { reason: "x", action: None, info_hash: None });
        assert_eq!(r, r#"{"failure reason":"x"}"#);
    }
}
