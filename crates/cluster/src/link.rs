//! The node's connection to Redis: commands with a bounded wait, pub/sub subscriptions that
//! survive reconnections, and a health flag the rest of the node reads so that a Redis outage
//! only ever degrades to "serve from local state".
//!
//! One `redis::aio::ConnectionManager` (RESP3, multiplexed) carries commands and pushes. Its
//! own reconnection (on a dropped socket or a disconnection push) is used, but subscriptions
//! are not left to it: this module keeps the set of channels and re-subscribes all of them
//! itself after every reconnection, then bumps a generation number that other parts watch to
//! re-announce what Redis forgot (registry record, swarm hellos). A connection that keeps
//! timing out (a silent partition) is dropped and built anew.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, PushKind, Value};
use tokio::sync::{mpsc, watch, Notify};

/// Pushes waiting for the dispatcher; beyond it messages are dropped (and counted).
const PUSH_QUEUE: usize = 8_192;
/// Channels per SUBSCRIBE command when re-subscribing.
const SUBSCRIBE_CHUNK: usize = 512;
/// Largest pub/sub payload handed to a handler.
pub const MAX_PAYLOAD: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Not connected, or the link failed or timed out: serve from local state.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error (a bug or a wrong-type key, not an outage).
    #[error("redis error: {0}")]
    Redis(String),
}

/// Called for every message on a subscribed channel, on the dispatcher task: must be quick
/// and must not block.
pub type Handler = Arc<dyn Fn(&str, &[u8]) + Send + Sync>;

/// Counters of the link (also exported as Prometheus metrics by `shoal serve`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub ops: u64,
    pub op_errors: u64,
    pub reconnects: u64,
    pub messages_in: u64,
    pub messages_dropped: u64,
    pub healthy: bool,
}

struct Shared {
    lost: AtomicBool,
    /// A subscription was added while the link was down: subscribe everything again.
    dirty: AtomicBool,
    notify: Notify,
    messages_in: AtomicU64,
    messages_dropped: AtomicU64,
}

struct Inner {
    client: redis::Client,
    op_timeout: Duration,
    check_every: Duration,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    /// Fast path: a clone of the current connection (None while down).
    current: RwLock<Option<ConnectionManager>>,
    healthy: AtomicBool,
    handlers: Arc<RwLock<HashMap<String, Handler>>>,
    shared: Arc<Shared>,
    push_tx: mpsc::Sender<(String, Vec<u8>)>,
    generation: watch::Sender<u64>,
    ops: AtomicU64,
    op_errors: AtomicU64,
    reconnects: AtomicU64,
    closed: AtomicBool,
}

/// A cheap handle; clones share one connection.
#[derive(Clone)]
pub struct Link(Arc<Inner>);

/// `redis://…` with `protocol=resp3` added (pushes need RESP3).
fn resp3_url(url: &str) -> String {
    if url.contains("protocol=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}protocol=resp3")
}

fn is_link_failure(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

impl Link {
    /// Start connecting to `url` in the background (the node starts even when Redis is
    /// down). Needs a tokio runtime. `check_every`: how often an unhealthy link retries.
    pub fn new(url: &str, op_timeout: Duration, check_every: Duration) -> Result<Link, LinkError> {
        let client =
            redis::Client::open(resp3_url(url)).map_err(|e| LinkError::Redis(format!("redis URL: {e}")))?;
        let (push_tx, push_rx) = mpsc::channel(PUSH_QUEUE);
        let handlers: Arc<RwLock<HashMap<String, Handler>>> = Arc::default();
        let shared = Arc::new(Shared {
            lost: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
            notify: Notify::new(),
            messages_in: AtomicU64::new(0),
            messages_dropped: AtomicU64::new(0),
        });
        let inner = Arc::new(Inner {
            client,
            op_timeout,
            check_every,
            conn: tokio::sync::Mutex::new(None),
            current: RwLock::new(None),
            healthy: AtomicBool::new(false),
            handlers: handlers.clone(),
            shared: shared.clone(),
            push_tx,
            generation: watch::channel(0).0,
            ops: AtomicU64::new(0),
            op_errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(dispatch(push_rx, handlers, shared));
        tokio::spawn(supervise(Arc::downgrade(&inner)));
        Ok(Link(inner))
    }

    pub fn healthy(&self) -> bool {
        self.0.healthy.load(Relaxed)
    }

    /// Bumped after every (re)connection once all subscriptions are in place: watchers
    /// re-announce what a restarted Redis forgot.
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.0.generation.subscribe()
    }

    pub fn op_timeout(&self) -> Duration {
        self.0.op_timeout
    }

    pub fn stats(&self) -> LinkStats {
        LinkStats {
            ops: self.0.ops.load(Relaxed),
            op_errors: self.0.op_errors.load(Relaxed),
            reconnects: self.0.reconnects.load(Relaxed),
            messages_in: self.0.shared.messages_in.load(Relaxed),
            messages_dropped: self.0.shared.messages_dropped.load(Relaxed),
            healthy: self.healthy(),
        }
    }

    fn current(&self) -> Result<ConnectionManager, LinkError> {
        if !self.healthy() {
            return Err(LinkError::Unavailable("not connected".into()));
        }
        self.0
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| LinkError::Unavailable("not connected".into()))
    }

    fn failed(&self, e: &redis::RedisError) -> LinkError {
        self.0.op_errors.fetch_add(1, Relaxed);
        if is_link_failure(e) {
            self.mark_lost();
            LinkError::Unavailable(e.to_string())
        } else {
            LinkError::Redis(e.to_string())
        }
    }

    fn mark_lost(&self) {
        self.0.healthy.store(false, Relaxed);
        self.0.shared.lost.store(true, Relaxed);
        self.0.shared.notify.notify_one();
    }

    /// One command, waiting at most the op timeout. Fails at once while Redis is down.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, LinkError> {
        let mut c = self.current()?;
        self.0.ops.fetch_add(1, Relaxed);
        match tokio::time::timeout(self.0.op_timeout, cmd.query_async::<T>(&mut c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.failed(&e)),
            Err(_) => {
                self.0.op_errors.fetch_add(1, Relaxed);
                self.mark_lost();
                Err(LinkError::Unavailable("timed out".into()))
            }
        }
    }

    /// A pipeline in one round trip, same rules as [`Link::query`].
    pub async fn pipe<T: FromRedisValue>(&self, p: &redis::Pipeline) -> Result<T, LinkError> {
        // Redis refuses an empty pipeline ("empty command"); callers build them from lists
        // that may be empty (no complete window yet), and the answer is known anyway.
        if p.is_empty() {
            return T::from_redis_value(Value::Array(Vec::new()))
                .map_err(|e| LinkError::Redis(e.to_string()));
        }
        let mut c = self.current()?;
        self.0.ops.fetch_add(1, Relaxed);
        match tokio::time::timeout(self.0.op_timeout, p.query_async::<T>(&mut c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.failed(&e)),
            Err(_) => {
                self.0.op_errors.fetch_add(1, Relaxed);
                self.mark_lost();
                Err(LinkError::Unavailable("timed out".into()))
            }
        }
    }

    /// Deliver messages of `channel` to `handler` from now on, across reconnections. The
    /// SUBSCRIBE itself is sent now if Redis is up, else after the next reconnection.
    pub async fn subscribe(&self, channel: String, handler: Handler) {
        self.0.handlers.write().unwrap_or_else(|p| p.into_inner()).insert(channel.clone(), handler);
        match self.current() {
            Ok(mut c) => match tokio::time::timeout(self.0.op_timeout, c.subscribe(&channel)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.failed(&e);
                }
                Err(_) => self.mark_lost(),
            },
            Err(_) => {
                // The supervisor may be restoring right now with a list that lacks this
                // channel: make it go round once more.
                self.0.shared.dirty.store(true, Relaxed);
                self.0.shared.notify.notify_one();
            }
        }
    }

    pub async fn unsubscribe(&self, channel: &str) {
        let had = self.0.handlers.write().unwrap_or_else(|p| p.into_inner()).remove(channel).is_some();
        if !had {
            return;
        }
        if let Ok(mut c) = self.current() {
            if let Ok(Err(e)) = tokio::time::timeout(self.0.op_timeout, c.unsubscribe(channel)).await {
                self.failed(&e);
            }
        }
    }

    pub fn subscriptions(&self) -> usize {
        self.0.handlers.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Wait until the link is healthy (at most `limit`).
    pub async fn wait_healthy(&self, limit: Duration) -> bool {
        let mut g = self.generation();
        let deadline = tokio::time::Instant::now() + limit;
        while !self.healthy() {
            if tokio::time::timeout_at(deadline, g.changed()).await.is_err() {
                return self.healthy();
            }
        }
        true
    }

    /// Stop the supervisor and drop the connection and every handler.
    pub async fn close(&self) {
        self.0.closed.store(true, Relaxed);
        self.0.healthy.store(false, Relaxed);
        self.0.handlers.write().unwrap_or_else(|p| p.into_inner()).clear();
        *self.0.current.write().unwrap_or_else(|p| p.into_inner()) = None;
        *self.0.conn.lock().await = None;
        self.0.shared.notify.notify_one();
    }
}

/// Runs handlers for queued messages (off the connection's own task).
async fn dispatch(
    mut rx: mpsc::Receiver<(String, Vec<u8>)>,
    handlers: Arc<RwLock<HashMap<String, Handler>>>,
    shared: Arc<Shared>,
) {
    while let Some((channel, payload)) = rx.recv().await {
        let h = handlers.read().unwrap_or_else(|p| p.into_inner()).get(&channel).cloned();
        if let Some(h) = h {
            shared.messages_in.fetch_add(1, Relaxed);
            h(&channel, &payload);
        }
    }
}

fn bulk(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        _ => None,
    }
}

/// The push sender handed to the connection: never blocks.
fn push_sender(
    tx: mpsc::Sender<(String, Vec<u8>)>,
    shared: Arc<Shared>,
) -> impl Fn(redis::PushInfo) -> Result<(), ()> + Send + Sync + 'static {
    move |push: redis::PushInfo| {
        match push.kind {
            PushKind::Disconnection => {
                shared.lost.store(true, Relaxed);
                shared.notify.notify_one();
            }
            PushKind::Message => {
                let (Some(ch), Some(payload)) =
                    (push.data.first().and_then(bulk), push.data.get(1).and_then(bulk))
                else {
                    return Ok(());
                };
                let Ok(ch) = std::str::from_utf8(ch) else { return Ok(()) };
                if payload.len() > MAX_PAYLOAD || tx.try_send((ch.to_owned(), payload.to_vec())).is_err() {
                    shared.messages_dropped.fetch_add(1, Relaxed);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Keeps the link up: (re)connects, re-subscribes, bumps the generation.
async fn supervise(weak: Weak<Inner>) {
    let mut failures = 0u32;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Relaxed) {
            return;
        }
        let lost = inner.shared.lost.swap(false, Relaxed);
        let dirty = inner.shared.dirty.swap(false, Relaxed);
        if lost || dirty || !inner.healthy.load(Relaxed) {
            if lost {
                inner.healthy.store(false, Relaxed);
            }
            match restore(&inner).await {
                Ok(()) => {
                    failures = 0;
                    if !inner.closed.load(Relaxed) && !inner.healthy.swap(true, Relaxed) {
                        inner.reconnects.fetch_add(1, Relaxed);
                        inner.generation.send_modify(|g| *g += 1);
                        tracing::info!("redis link up (generation {})", *inner.generation.borrow());
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(30) {
                        tracing::warn!("redis unavailable, serving from local state: {e}");
                    }
                    if failures >= 2 {
                        // A connection that keeps failing may be stuck on a dead socket (a
                        // silent partition): build a new one.
                        *inner.current.write().unwrap_or_else(|p| p.into_inner()) = None;
                        *inner.conn.lock().await = None;
                    }
                }
            }
        }
        let wait = if inner.healthy.load(Relaxed) { inner.check_every * 4 } else { inner.check_every };
        let shared = inner.shared.clone();
        drop(inner);
        tokio::select! {
            _ = shared.notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Connect if needed, check with PING, subscribe every channel.
async fn restore(inner: &Arc<Inner>) -> Result<(), String> {
    let t = inner.op_timeout;
    let mut guard = inner.conn.lock().await;
    if guard.is_none() {
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t))
            .set_number_of_retries(1)
            .set_max_delay(t)
            .set_push_sender(push_sender(inner.push_tx.clone(), inner.shared.clone()));
        let c = tokio::time::timeout(t * 2, ConnectionManager::new_with_config(inner.client.clone(), cfg))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| format!("connect: {e}"))?;
        *guard = Some(c);
    }
    let mut c = guard.clone().ok_or("no connection")?;
    drop(guard);
    let pong: String = tokio::time::timeout(t, redis::cmd("PING").query_async(&mut c))
        .await
        .map_err(|_| "PING timed out".to_owned())?
        .map_err(|e| format!("PING: {e}"))?;
    if pong != "PONG" {
        return Err(format!("PING answered {pong:?}"));
    }
    let channels: Vec<String> =
        inner.handlers.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
    for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
        tokio::time::timeout(t, c.subscribe(chunk))
            .await
            .map_err(|_| "SUBSCRIBE timed out".to_owned())?
            .map_err(|e| format!("SUBSCRIBE: {e}"))?;
    }
    *inner.current.write().unwrap_or_else(|p| p.into_inner()) = Some(c);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp3_is_requested() {
        assert_eq!(resp3_url("redis://h:1"), "redis://h:1?protocol=resp3");
        assert_eq!(resp3_url("redis://h:1/0?x=1"), "redis://h:1/0?x=1&protocol=resp3");
        assert_eq!(resp3_url("redis://h?protocol=resp3"), "redis://h?protocol=resp3");
    }
}
