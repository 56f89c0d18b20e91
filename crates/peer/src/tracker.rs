//! The tracker connection: one WebSocket at a time to the first tracker URL that answers
//! (the API lists a primary and hot standbys, in order), reconnecting with backoff. It only
//! carries frames; what to announce and when is the core's decision.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use shoal_proto::tracker::{ClientMsg, ServerMsg};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::msg::{CoreMsg, TrackerEvent};

/// Largest frame read from a tracker.
const MAX_FRAME: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Liveness (a tracker node that is partitioned away sends no FIN: without this the SDK would
/// wait for TCP to give up). After this long without any frame from the tracker, send a `ping`…
pub const IDLE_PING: Duration = Duration::from_secs(4);
/// …and if nothing arrives this long after something was sent, the tracker is gone: move on to
/// the next tracker URL. A silent tracker is left within `IDLE_PING + REPLY_TIMEOUT`.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(4);

/// When a connection's tracker has gone silent (pure, so it can be tested without sockets).
#[derive(Debug, Default)]
struct Liveness {
    /// Something was sent that the tracker answers, and nothing came back since.
    awaiting_since: Option<tokio::time::Instant>,
    last_rx: Option<tokio::time::Instant>,
    /// `ping` is only valid after the first announce was answered.
    announced: bool,
}

enum Check {
    Fine,
    Ping,
    Silent,
}

impl Liveness {
    fn sent(&mut self, now: tokio::time::Instant) {
        self.awaiting_since.get_or_insert(now);
    }

    fn received(&mut self, now: tokio::time::Instant, peers: bool) {
        self.awaiting_since = None;
        self.last_rx = Some(now);
        self.announced |= peers;
    }

    fn check(&self, now: tokio::time::Instant) -> Check {
        if let Some(t) = self.awaiting_since {
            if now.duration_since(t) >= REPLY_TIMEOUT {
                return Check::Silent;
            }
            return Check::Fine;
        }
        match self.last_rx {
            Some(t) if self.announced && now.duration_since(t) >= IDLE_PING => Check::Ping,
            _ => Check::Fine,
        }
    }
}

/// Start the connection task. It ends when `cmds`' sender is dropped.
pub fn spawn(
    urls: Vec<String>,
    gen: u32,
    core: mpsc::UnboundedSender<CoreMsg>,
) -> mpsc::UnboundedSender<ClientMsg> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(urls, gen, core, rx));
    tx
}

async fn run(
    urls: Vec<String>,
    gen: u32,
    core: mpsc::UnboundedSender<CoreMsg>,
    mut cmds: mpsc::UnboundedReceiver<ClientMsg>,
) {
    if urls.is_empty() {
        return;
    }
    let mut backoff = Duration::from_millis(500);
    let mut idx = 0usize;
    loop {
        let url = urls[idx % urls.len()].clone();
        let cfg =
            WebSocketConfig::default().max_message_size(Some(MAX_FRAME)).max_frame_size(Some(MAX_FRAME));
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(cfg), true),
        )
        .await;
        let ws = match attempt {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => {
                tracing::debug!(%url, "tracker connect failed: {e}");
                if !next_or_wait(&mut idx, urls.len(), &mut backoff, &mut cmds).await {
                    return;
                }
                continue;
            }
            Err(_) => {
                tracing::debug!(%url, "tracker connect timed out");
                if !next_or_wait(&mut idx, urls.len(), &mut backoff, &mut cmds).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(%url, "tracker connected");
        if core.send(CoreMsg::Tracker { gen, ev: TrackerEvent::Connected { url: url.clone() } }).is_err() {
            return;
        }
        let connected_at = tokio::time::Instant::now();
        let (mut sink, mut stream) = ws.split();
        let mut live = Liveness::default();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut silent = false;
        let reason = loop {
            tokio::select! {
                cmd = cmds.recv() => {
                    let Some(cmd) = cmd else {
                        let _ = sink.close().await;
                        return;
                    };
                    let text = serde_json::to_string(&cmd).expect("tracker messages always serialize");
                    if let Err(e) = sink.send(WsMessage::text(text)).await {
                        break format!("send: {e}");
                    }
                    // Announces and pings are answered; signals are not.
                    if matches!(cmd, ClientMsg::Announce(_) | ClientMsg::Ping) {
                        live.sent(tokio::time::Instant::now());
                    }
                }
                _ = tick.tick() => {
                    match live.check(tokio::time::Instant::now()) {
                        Check::Fine => {}
                        Check::Ping => {
                            let text = serde_json::to_string(&ClientMsg::Ping).expect("serializes");
                            if let Err(e) = sink.send(WsMessage::text(text)).await {
                                break format!("send: {e}");
                            }
                            live.sent(tokio::time::Instant::now());
                        }
                        Check::Silent => {
                            silent = true;
                            break format!("no answer from the tracker in {REPLY_TIMEOUT:?}");
                        }
                    }
                }
                frame = stream.next() => {
                    if matches!(frame, Some(Ok(_))) {
                        live.received(tokio::time::Instant::now(), false);
                    }
                    match frame {
                        Some(Ok(WsMessage::Text(t))) => match ServerMsg::parse(t.as_str()) {
                            Ok(m) => {
                                if matches!(m, ServerMsg::Peers(_)) {
                                    live.received(tokio::time::Instant::now(), true);
                                }
                                if core.send(CoreMsg::Tracker { gen, ev: TrackerEvent::Msg(Box::new(m)) }).is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::debug!("tracker sent an unreadable frame: {e}"),
                        },
                        Some(Ok(WsMessage::Close(c))) => break format!("closed: {c:?}"),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => break format!("read: {e}"),
                        None => break "closed".to_owned(),
                    }
                }
            }
        };
        tracing::info!(%url, "tracker connection lost: {reason}");
        if core.send(CoreMsg::Tracker { gen, ev: TrackerEvent::Disconnected }).is_err() {
            return;
        }
        // A connection that lasted is worth retrying first; a flapping one moves on, and so does
        // one whose tracker went silent (unreachable: retrying it first would wait for the
        // connect timeout).
        if connected_at.elapsed() > Duration::from_secs(30) && !silent {
            backoff = Duration::from_millis(500);
            idx = 0;
            if !wait_draining(backoff, &mut cmds).await {
                return;
            }
        } else if !next_or_wait(&mut idx, urls.len(), &mut backoff, &mut cmds).await {
            return;
        }
    }
}

/// Move to the next URL; after a full round, wait with exponential backoff. False when the
/// core is gone.
async fn next_or_wait(
    idx: &mut usize,
    n: usize,
    backoff: &mut Duration,
    cmds: &mut mpsc::UnboundedReceiver<ClientMsg>,
) -> bool {
    *idx += 1;
    if (*idx).is_multiple_of(n) {
        let wait = *backoff;
        *backoff = (*backoff * 2).min(Duration::from_secs(10));
        return wait_draining(wait, cmds).await;
    }
    true
}

/// Sleep, dropping commands meant for a connection that does not exist (the core announces
/// again on `Connected`).
async fn wait_draining(d: Duration, cmds: &mut mpsc::UnboundedReceiver<ClientMsg>) -> bool {
    let until = tokio::time::Instant::now() + d;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return true,
            c = cmds.recv() => if c.is_none() { return false },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_tracker_is_noticed() {
        let t0 = tokio::time::Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut l = Liveness::default();
        l.sent(at(0));
        assert!(matches!(l.check(at(3_999)), Check::Fine));
        assert!(matches!(l.check(at(4_000)), Check::Silent), "announce never answered");
        let mut l = Liveness::default();
        l.sent(at(0));
        l.received(at(10), true);
        assert!(matches!(l.check(at(4_009)), Check::Fine));
        assert!(matches!(l.check(at(4_010)), Check::Ping), "idle: ping");
        l.sent(at(4_010));
        l.sent(at(5_000));
        assert!(matches!(l.check(at(8_009)), Check::Fine), "the first unanswered send counts");
        assert!(matches!(l.check(at(8_010)), Check::Silent));
        // Before the first `peers`, no ping (the tracker refuses `ping` before an announce).
        let mut l = Liveness::default();
        l.received(at(0), false);
        assert!(matches!(l.check(at(60_000)), Check::Fine));
    }
}
