//! One WebSocket connection, whichever protocol it speaks: reads frames within the size and
//! rate limits, hands text frames to the protocol (synchronously, so no lock is ever held
//! across an await), writes replies and messages queued by other connections, and closes with
//! a reason on bad input, silence or a slow reader.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use shoal_proto::tracker::ErrorCode;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite;

use crate::state::{Outbound, Route, State};
use crate::stats::Path;

/// How long a closing connection waits for the client's close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// A reason to close the connection.
#[derive(Debug)]
pub(crate) struct Fatal {
    pub code: ErrorCode,
    pub reason: String,
}

impl Fatal {
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into() }
    }
}

/// What a protocol handler sees of its connection.
pub(crate) struct Cx<'a> {
    pub state: &'a Arc<State>,
    pub route: &'a Route,
    /// The client's address (after `X-Forwarded-For` when trusted), if known.
    pub ip: Option<IpAddr>,
    /// Frames to send on this connection, in order, after the handler returns.
    pub out: &'a mut Vec<String>,
}

pub(crate) trait Protocol: Send + 'static {
    const PATH: Path;
    /// Handle one text frame.
    fn on_text(&mut self, cx: &mut Cx<'_>, text: &str) -> Result<(), Fatal>;
    /// The last text frame sent before closing for `fatal`, if the protocol has one.
    fn fatal_frame(&self, fatal: &Fatal) -> Option<String>;
    /// Silence allowed before the next message, ms (handshake or peer timeout).
    fn idle_timeout_ms(&self, state: &State) -> u64;
    /// The connection is gone: drop its memberships.
    fn on_close(&mut self, state: &State, conn: u64);
}

/// Per-connection token bucket in thousandths of a message.
struct RateLimit {
    tokens: u64,
    cap: u64,
    per_ms: u64,
    last_ms: u64,
}

impl RateLimit {
    fn new(per_sec: u32, burst: u32, now_ms: u64) -> Self {
        let cap = u64::from(burst) * 1_000;
        Self { tokens: cap, cap, per_ms: u64::from(per_sec), last_ms: now_ms }
    }

    fn allow(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = now_ms;
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.cap);
        if self.tokens >= 1_000 {
            self.tokens -= 1_000;
            true
        } else {
            false
        }
    }
}

enum Event {
    Queued(Option<Outbound>),
    Frame(Option<Result<Message, axum::Error>>),
    Idle,
}

/// Why the read loop ended.
enum End {
    /// Closed by the client, or the socket failed: nothing more to send.
    Gone,
    /// Close with this reason (text frame, then close frame).
    Fatal(Fatal),
    /// Close because of another connection or the sweeper (`text` already rendered).
    Told(ErrorCode, Option<String>),
}

pub(crate) async fn drive<P: Protocol>(
    state: Arc<State>,
    mut ws: WebSocket,
    ip: Option<IpAddr>,
    mut proto: P,
) {
    state.counters.conn_opened(P::PATH);
    let (tx, mut rx) = mpsc::channel(state.cfg.outbound_queue);
    let route = Route { conn: state.next_conn_id(), tx };
    let write_timeout = Duration::from_millis(state.cfg.write_timeout_ms);
    let mut rate = RateLimit::new(state.cfg.rate_per_sec, state.cfg.rate_burst, state.now_ms());
    let mut out = Vec::new();
    let mut deadline = Instant::now() + Duration::from_millis(proto.idle_timeout_ms(&state));

    let end = loop {
        // Queued messages first: a connection that floods us must not starve its own replies.
        let event = tokio::select! {
            biased;
            q = rx.recv() => Event::Queued(q),
            f = ws.recv() => Event::Frame(f),
            _ = sleep_until(deadline) => Event::Idle,
        };
        match event {
            Event::Queued(Some(Outbound::Text(text))) => {
                if !send(&mut ws, text, write_timeout).await {
                    break End::Fatal(Fatal::new(ErrorCode::SlowConsumer, "write timed out"));
                }
            }
            Event::Queued(Some(Outbound::Close { code, text })) => break End::Told(code, text),
            // The route in this function holds a sender, so the queue cannot close.
            Event::Queued(None) => break End::Gone,
            Event::Idle => break End::Fatal(Fatal::new(ErrorCode::Timeout, "no message within the timeout")),
            Event::Frame(None) | Event::Frame(Some(Ok(Message::Close(_)))) => break End::Gone,
            Event::Frame(Some(Err(e))) => match read_error(e) {
                Some(f) => break End::Fatal(f),
                None => break End::Gone,
            },
            Event::Frame(Some(Ok(msg))) => {
                if !rate.allow(state.now_ms()) {
                    break End::Fatal(Fatal::new(ErrorCode::RateLimited, "too many messages"));
                }
                let text = match msg {
                    Message::Text(t) if t.len() > state.cfg.max_message_bytes => {
                        let reason =
                            format!("message of {} bytes over {}", t.len(), state.cfg.max_message_bytes);
                        break End::Fatal(Fatal::new(ErrorCode::TooLarge, reason));
                    }
                    Message::Text(t) => t,
                    Message::Binary(_) => {
                        break End::Fatal(Fatal::new(ErrorCode::Binary, "binary frames are not accepted"))
                    }
                    // Pings are answered by the WebSocket layer; they only count against the rate.
                    _ => continue,
                };
                let mut cx = Cx { state: &state, route: &route, ip, out: &mut out };
                let result = proto.on_text(&mut cx, text.as_str());
                deadline = Instant::now() + Duration::from_millis(proto.idle_timeout_ms(&state));
                let mut written = true;
                for frame in out.drain(..) {
                    written = written && send(&mut ws, frame, write_timeout).await;
                }
                if let Err(f) = result {
                    break End::Fatal(f);
                }
                if !written {
                    break End::Fatal(Fatal::new(ErrorCode::SlowConsumer, "write timed out"));
                }
            }
        }
    };

    // Leave the swarms before the (possibly slow) goodbye, so nobody is offered a dead peer.
    proto.on_close(&state, route.conn);
    match end {
        End::Gone => {}
        End::Fatal(f) => {
            state.counters.reject(f.code);
            let text = proto.fatal_frame(&f);
            close(&mut ws, f.code, text, write_timeout).await;
        }
        End::Told(code, text) => {
            state.counters.reject(code);
            close(&mut ws, code, text, write_timeout).await;
        }
    }
    state.counters.conn_closed(P::PATH);
}

async fn send(ws: &mut WebSocket, text: String, limit: Duration) -> bool {
    matches!(timeout(limit, ws.send(Message::Text(text.into()))).await, Ok(Ok(())))
}

/// Send the reason and a close frame, then wait briefly for the client's close frame so the
/// reason is not lost to a TCP reset (RFC 6455 §7.1.1: the server closes the TCP connection
/// after the handshake).
async fn close(ws: &mut WebSocket, code: ErrorCode, text: Option<String>, limit: Duration) {
    let sent = timeout(limit, async {
        if let Some(text) = text {
            ws.send(Message::Text(text.into())).await?;
        }
        let frame = CloseFrame { code: code.close_code(), reason: code.as_str().into() };
        ws.send(Message::Close(Some(frame))).await
    })
    .await;
    if matches!(sent, Ok(Ok(()))) {
        let _ = timeout(CLOSE_LINGER, async {
            // Bounded: at most what arrives within the linger time; data frames are discarded.
            while let Some(Ok(m)) = ws.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// A read error worth a reason (the client is still there to hear it), or `None` when the
/// socket itself failed.
fn read_error(e: axum::Error) -> Option<Fatal> {
    let inner = e.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(c)) => Some(Fatal::new(ErrorCode::TooLarge, c.to_string())),
        // A client that just drops the socket is gone, not wrong.
        Some(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        )) => None,
        Some(tungstenite::Error::Protocol(p)) => Some(Fatal::new(ErrorCode::BadRequest, p.to_string())),
        Some(tungstenite::Error::Utf8(_)) => Some(Fatal::new(ErrorCode::BadJson, "text frame is not UTF-8")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_burst_then_rate() {
        let mut r = RateLimit::new(10, 3, 0);
        assert!(r.allow(0) && r.allow(0) && r.allow(0));
        assert!(!r.allow(0), "burst spent");
        assert!(!r.allow(50), "half a token");
        assert!(r.allow(100), "one token after 100 ms at 10/s");
        assert!(r.allow(10_000) && r.allow(10_000) && r.allow(10_000));
        assert!(!r.allow(10_000), "refill is capped at the burst");
    }
}
