//! Test harness: the tracker router served in-process on 127.0.0.1:0, and real WebSocket
//! clients (tokio-tungstenite) that can pick their loopback source address (127.0.0.x), so the
//! server derives their locality from the address as it would in production.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shoal_tracker::{AllowAll, TicketVerifier, Tracker, TrackerConfig};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const WAIT: Duration = Duration::from_secs(5);

pub struct Server {
    pub addr: SocketAddr,
    pub tracker: Tracker,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start(cfg: TrackerConfig) -> Result<Server> {
    start_with(cfg, Arc::new(AllowAll)).await
}

pub async fn start_with(cfg: TrackerConfig, verifier: Arc<dyn TicketVerifier>) -> Result<Server> {
    let tracker = Tracker::new(cfg, verifier)?;
    let app = tracker.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    Ok(Server { addr, tracker, task })
}

/// A config with short timers for tests; other fields default.
pub fn fast_config() -> TrackerConfig {
    TrackerConfig {
        announce_interval_ms: 1_000,
        peer_timeout_ms: 1_500,
        sweep_interval_ms: 250,
        handshake_timeout_ms: 2_000,
        seed: 7,
        ..TrackerConfig::default()
    }
}

pub struct Client {
    pub ws: WebSocketStream<TcpStream>,
}

/// What the server sent before it closed.
#[derive(Debug)]
pub struct Closed {
    pub texts: Vec<Value>,
    pub frame: Option<CloseFrame>,
}

impl Closed {
    /// The `code` of the last Shoal `error` message and the close frame's (code, reason).
    pub fn error_code(&self) -> Option<&str> {
        self.texts.iter().rev().find_map(|v| v.get("code").and_then(Value::as_str))
    }

    pub fn close_code(&self) -> Option<u16> {
        self.frame.as_ref().map(|f| u16::from(f.code))
    }

    pub fn close_reason(&self) -> Option<&str> {
        self.frame.as_ref().map(|f| f.reason.as_str())
    }
}

impl Client {
    pub async fn connect(server: SocketAddr, path: &str) -> Result<Self> {
        Self::connect_from(server, "127.0.0.1".parse()?, path).await
    }

    /// Connect from a chosen loopback source address.
    pub async fn connect_from(server: SocketAddr, source: IpAddr, path: &str) -> Result<Self> {
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::new(source, 0))?;
        let tcp = sock.connect(server).await?;
        let url = format!("ws://{server}{path}");
        let (ws, _resp) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, tcp))
            .await
            .context("websocket handshake timed out")??;
        Ok(Self { ws })
    }

    pub async fn send(&mut self, v: Value) -> Result<()> {
        self.ws.send(Message::Text(v.to_string().into())).await?;
        Ok(())
    }

    pub async fn send_raw(&mut self, m: Message) -> Result<()> {
        self.ws.send(m).await?;
        Ok(())
    }

    /// Next text frame as JSON (pings skipped); error on close or after [`WAIT`].
    pub async fn recv(&mut self) -> Result<Value> {
        self.recv_within(WAIT).await
    }

    pub async fn recv_within(&mut self, limit: Duration) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow!("no message within {limit:?}"))?
                .ok_or_else(|| anyhow!("connection ended"))??;
            match msg {
                Message::Text(t) => return Ok(serde_json::from_str(t.as_str())?),
                Message::Close(f) => bail!("closed by server: {f:?}"),
                _ => continue,
            }
        }
    }

    /// Whether a text frame arrives within `limit`.
    pub async fn silent_for(&mut self, limit: Duration) -> Result<bool> {
        match tokio::time::timeout(limit, self.ws.next()).await {
            Err(_) => Ok(true),
            Ok(Some(Ok(Message::Text(t)))) => bail!("unexpected message: {t}"),
            Ok(other) => bail!("unexpected event: {other:?}"),
        }
    }

    /// Read until the server closes; collect the text frames before the close.
    pub async fn expect_close(&mut self) -> Result<Closed> {
        let mut texts = Vec::new();
        for _ in 0..100 {
            let next = tokio::time::timeout(WAIT, self.ws.next()).await.context("server did not close")?;
            match next {
                Some(Ok(Message::Text(t))) => texts.push(serde_json::from_str(t.as_str())?),
                Some(Ok(Message::Close(frame))) => return Ok(Closed { texts, frame }),
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return Ok(Closed { texts, frame: None }),
            }
        }
        bail!("more than 100 frames without a close")
    }

    /// Announce and return the `peers` reply.
    pub async fn announce(&mut self, body: Value) -> Result<Value> {
        self.send(body).await?;
        let v = self.recv().await?;
        if v["type"] != "peers" {
            bail!("expected peers, got {v}");
        }
        Ok(v)
    }
}

/// An announce message with defaults for fields the test does not care about.
pub fn announce(peer_id: &str, stream: &str, rendition: &str, extra: Value) -> Value {
    let mut v = json!({
        "type": "announce",
        "swarm": {"stream": stream, "rendition": rendition},
        "peer_id": peer_id,
        "ticket": "",
        "position": {"seq": 100, "buffer_ms": 4000},
        "upload_kbps": 2000,
        "nat": "eim",
        "connected": [],
        "want": 8
    });
    if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in extra {
            obj.insert(k.clone(), val.clone());
        }
    }
    v
}

pub fn candidate_ids(peers: &Value) -> Vec<String> {
    peers["candidates"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["peer_id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Poll `f` every 20 ms until it holds, at most `limit`.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}
