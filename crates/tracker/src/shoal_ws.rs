//! The Shoal tracker protocol on `GET /v1/tracker` (`docs/tracker-protocol.md`).

use std::sync::Arc;

use shoal_proto::ids::valid_name;
use shoal_proto::tracker::{
    valid_locality, Announce, Candidate, ClientMsg, ErrorCode, ErrorMsg, ParseError, Peers, ServerMsg,
    SignalFrom, SignalTo, SwarmId, MAX_TICKET_LEN,
};
use shoal_swarm::{sort_exclude, PeerInfo};

use crate::conn::{Cx, Fatal, Protocol};
use crate::state::{Outbound, State, SwarmKey, Via};
use crate::stats::Path;
use crate::ticket::TicketRequest;

const PONG: &str = r#"{"type":"pong"}"#;

struct Joined {
    swarm: SwarmId,
    key: SwarmKey,
}

#[derive(Default)]
pub(crate) struct ShoalConn {
    /// Fixed by the first announce.
    peer_id: Option<Box<str>>,
    /// The stream the ticket was checked for.
    admitted_stream: Option<String>,
    joined: Option<Joined>,
}

fn render(msg: &ServerMsg) -> String {
    serde_json::to_string(msg).expect("tracker messages are plain data and always serialize")
}

pub(crate) fn error_frame(code: ErrorCode, reason: &str, fatal: bool) -> String {
    render(&ServerMsg::Error(ErrorMsg { code, reason: reason.to_owned(), fatal }))
}

fn bad(reason: impl Into<String>) -> Fatal {
    Fatal::new(ErrorCode::BadRequest, reason)
}

impl Protocol for ShoalConn {
    const PATH: Path = Path::Shoal;

    fn on_text(&mut self, cx: &mut Cx<'_>, text: &str) -> Result<(), Fatal> {
        let msg = ClientMsg::parse(text).map_err(|e| match e {
            ParseError::Json(m) => Fatal::new(ErrorCode::BadJson, m),
            ParseError::UnknownType(t) => {
                Fatal::new(ErrorCode::UnknownType, format!("unknown message type {t:?}"))
            }
        })?;
        match msg {
            ClientMsg::Announce(a) => self.announce(cx, a),
            ClientMsg::Signal(s) => self.signal(cx, s),
            ClientMsg::Ping => {
                let (peer_id, joined) = self.member()?;
                let now = cx.state.now_ms();
                let alive = cx.state.with_existing(&joined.key, |s| s.touch(peer_id, now)).unwrap_or(false);
                if !alive {
                    return Err(Fatal::new(ErrorCode::Timeout, "membership expired"));
                }
                cx.out.push(PONG.to_owned());
                Ok(())
            }
        }
    }

    fn fatal_frame(&self, fatal: &Fatal) -> Option<String> {
        Some(error_frame(fatal.code, &fatal.reason, true))
    }

    fn idle_timeout_ms(&self, state: &State) -> u64 {
        if self.joined.is_some() {
            state.cfg.peer_timeout_ms
        } else {
            state.cfg.handshake_timeout_ms
        }
    }

    fn on_close(&mut self, state: &State, conn: u64) {
        if let (Some(peer_id), Some(j)) = (&self.peer_id, self.joined.take()) {
            state.leave(&j.key, peer_id, conn);
        }
    }
}

impl ShoalConn {
    fn member(&self) -> Result<(&str, &Joined), Fatal> {
        match (&self.peer_id, &self.joined) {
            (Some(p), Some(j)) => Ok((p, j)),
            _ => Err(Fatal::new(ErrorCode::NotAnnounced, "announce first")),
        }
    }

    fn announce(&mut self, cx: &mut Cx<'_>, a: Announce) -> Result<(), Fatal> {
        let st = cx.state;
        let cfg = &st.cfg;
        if !a.swarm.is_valid() {
            return Err(bad("swarm stream and rendition must be 1..=64 of [A-Za-z0-9_.-]"));
        }
        if !valid_name(&a.peer_id) {
            return Err(bad("peer_id must be 1..=64 of [A-Za-z0-9_.-]"));
        }
        if a.ticket.len() > MAX_TICKET_LEN {
            return Err(bad(format!("ticket longer than {MAX_TICKET_LEN} bytes")));
        }
        if a.connected.len() > cfg.max_connected {
            return Err(bad(format!("more than {} connected peers listed", cfg.max_connected)));
        }
        if let Some(hint) = &a.locality {
            if !valid_locality(hint) {
                return Err(bad("locality hint must be 1..=64 of [a-z0-9_.:-]"));
            }
        }
        match &self.peer_id {
            Some(p) if **p != *a.peer_id => {
                return Err(Fatal::new(ErrorCode::PeerIdChanged, "peer_id is fixed by the first announce"))
            }
            _ => {}
        }
        if self.admitted_stream.as_deref() != Some(a.swarm.stream.as_str()) {
            let req = TicketRequest {
                ticket: &a.ticket,
                peer_id: &a.peer_id,
                stream: &a.swarm.stream,
                rendition: &a.swarm.rendition,
                now_unix_ms: unix_ms(),
            };
            st.verifier.verify(&req).map_err(|r| Fatal::new(ErrorCode::Unauthorized, r))?;
            self.admitted_stream = Some(a.swarm.stream.clone());
        }
        let peer_id: &str = self.peer_id.get_or_insert_with(|| a.peer_id.as_str().into());

        // A rendition switch moves the membership.
        if let Some(j) = &self.joined {
            if j.swarm != a.swarm {
                st.leave(&j.key, peer_id, cx.route.conn);
                self.joined = None;
            }
        }
        let key = match &self.joined {
            Some(j) => j.key.clone(),
            None => SwarmKey::Shoal(a.swarm.clone()),
        };

        let locality = match cx.ip.map(|ip| st.locality.lookup(ip)) {
            Some(l) if !l.is_empty() => l,
            _ => match &a.locality {
                Some(hint) if cfg.locality.accept_client_hint => Arc::from(hint.as_str()),
                _ => Arc::from(""),
            },
        };
        let info = PeerInfo {
            locality: locality.clone(),
            nat: a.nat,
            seq: a.position.seq,
            buffer_ms: a.position.buffer_ms,
            upload_kbps: a.upload_kbps,
            connections: a.connected.len() as u32,
        };
        let exclude = sort_exclude(a.connected.iter().map(String::as_str));
        let want = a.want.min(cfg.max_want) as usize;
        let now = st.now_ms();
        let route = Via::Local(cx.route.clone());

        let outcome = st.with_swarm(&key, true, |s| {
            let previous = s.upsert(peer_id, info.clone(), route, now)?;
            st.relay.member_announced(&a.swarm, peer_id, &info);
            let candidates: Vec<Candidate> = s
                .select(&cfg.selection, peer_id, &info, &exclude, want)
                .into_iter()
                .map(|c| Candidate {
                    peer_id: c.peer_id.to_owned(),
                    locality: c.info.locality.to_string(),
                    nat: c.info.nat,
                    seq: c.info.seq,
                    score: c.score,
                })
                .collect();
            Ok((previous, s.len(), candidates))
        });
        let (previous, swarm_size, candidates) = match outcome {
            Ok(Some(Ok(r))) => r,
            Ok(Some(Err(shoal_swarm::SwarmFull))) => {
                return Err(Fatal::new(ErrorCode::SwarmFull, "the swarm is at its member limit"))
            }
            Ok(None) | Err(_) => {
                return Err(Fatal::new(ErrorCode::SwarmFull, "the tracker is at its swarm limit"))
            }
        };
        match previous {
            // New here (a member mirrored from another node that reconnected to this one is
            // new to this node's count too).
            None | Some(Via::Remote(_)) => st.counters.peer_joined(),
            Some(old) if old.conn() != Some(cx.route.conn) => {
                // Same peer id on a newer connection: the ticket-holder reconnected; the old
                // connection is stale.
                let text = error_frame(
                    ErrorCode::Replaced,
                    "the same peer_id announced on a newer connection",
                    true,
                );
                old.deliver(Outbound::Close { code: ErrorCode::Replaced, text: Some(text) }, &st.counters);
            }
            Some(_) => {}
        }
        self.joined = Some(Joined { swarm: a.swarm, key });
        st.counters.announce(Path::Shoal);
        let peers = Peers {
            swarm_size: swarm_size as u32,
            interval_ms: cfg.announce_interval_ms,
            locality: locality.to_string(),
            candidates,
        };
        cx.out.push(render(&ServerMsg::Peers(peers)));
        Ok(())
    }

    fn signal(&mut self, cx: &mut Cx<'_>, s: SignalTo) -> Result<(), Fatal> {
        let st = cx.state;
        let (peer_id, joined) = self.member()?;
        if !valid_name(&s.to) {
            return Err(bad("signal target must be 1..=64 of [A-Za-z0-9_.-]"));
        }
        if s.to == *peer_id {
            return Err(bad("signal to self"));
        }
        let raw = s.payload.get();
        if raw.len() > st.cfg.max_signal_bytes {
            return Err(Fatal::new(
                ErrorCode::TooLarge,
                format!("signal payload over {} bytes", st.cfg.max_signal_bytes),
            ));
        }
        if !raw.starts_with('{') {
            return Err(bad("signal payload must be a JSON object"));
        }
        let frame = render(&ServerMsg::Signal(SignalFrom { from: peer_id.to_owned(), payload: s.payload }));

        enum Delivery {
            Sent(Option<Outbound>),
            SenderGone,
            Gone,
            Absent(String),
            Remote(std::sync::Arc<str>, String),
        }
        let now = st.now_ms();
        let grace = st.cfg.departed_grace_ms;
        let delivery = st
            .with_existing(&joined.key, |sw| {
                if !sw.touch(peer_id, now) {
                    return Delivery::SenderGone;
                }
                match sw.get(&s.to) {
                    Some((_, Via::Remote(node))) => Delivery::Remote(node.clone(), frame),
                    Some((_, via)) => match via.try_send(Outbound::Text(frame)) {
                        Ok(()) => Delivery::Sent(None),
                        Err(e) => Delivery::Sent(Some(e.into_inner())),
                    },
                    None if sw.recently_departed(&s.to, now, grace) => Delivery::Gone,
                    None => Delivery::Absent(frame),
                }
            })
            .unwrap_or(Delivery::SenderGone);
        match delivery {
            Delivery::Sent(None) => st.counters.relayed(Path::Shoal, 1),
            // The receiver is not reading fast enough; its queue is full or it is closing.
            Delivery::Sent(Some(_)) => st.counters.dropped(1),
            Delivery::SenderGone => return Err(Fatal::new(ErrorCode::Timeout, "membership expired")),
            Delivery::Gone => {
                st.counters.reject(ErrorCode::PeerGone);
                cx.out.push(error_frame(ErrorCode::PeerGone, &format!("{} left the swarm", s.to), false));
            }
            Delivery::Remote(node, frame) => {
                if st.relay.forward_to(&node, &joined.swarm, &s.to, &frame) {
                    st.counters.relayed(Path::Shoal, 1);
                } else {
                    // Its node is gone: the member will expire here; drop this pairing.
                    st.counters.reject(ErrorCode::PeerGone);
                    cx.out.push(error_frame(ErrorCode::PeerGone, &format!("{} is unreachable", s.to), false));
                }
            }
            Delivery::Absent(frame) => {
                if !st.relay.forward_signal(&joined.swarm, &s.to, &frame) {
                    return Err(Fatal::new(
                        ErrorCode::NotInSwarm,
                        format!("{} is not a member of your swarm", s.to),
                    ));
                }
                st.counters.relayed(Path::Shoal, 1);
            }
        }
        Ok(())
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
