//! HTTP to the CDN: the engine's fetches (with Range for partial completion), the proxy's
//! playlists and pass-through, with failover across the CDN base URLs from the API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use shoal_engine::{HttpEvent, HttpId};
use tokio::sync::mpsc;

use crate::msg::CoreMsg;

/// A response body that sends nothing for this long has failed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A CDN base whose response (status and headers) takes longer than this is too slow to play
/// from: the request moves to the next base (a standby origin or another CDN) while the player
/// still has its buffer.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The CDN base URLs, in failover order, and which one worked last.
pub struct Cdn {
    bases: RwLock<Vec<String>>,
    preferred: AtomicUsize,
    pub http: reqwest::Client,
}

impl Cdn {
    /// `primary` is the base the app's URL lives under.
    pub fn new(primary: String) -> anyhow::Result<Cdn> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("shoal-native/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Cdn { bases: RwLock::new(vec![primary]), preferred: AtomicUsize::new(0), http })
    }

    /// Add the API's bases after the primary (duplicates ignored).
    pub fn add_bases(&self, more: &[String]) {
        let mut b = self.bases.write().unwrap_or_else(|e| e.into_inner());
        for m in more {
            let m = if m.ends_with('/') { m.clone() } else { format!("{m}/") };
            if !b.contains(&m) && reqwest::Url::parse(&m).is_ok() {
                b.push(m);
            }
        }
    }

    /// The URLs to try for `url`, preferred base first: the same path under every base it
    /// lives under; just `url` if it is under none.
    pub fn candidates(&self, url: &str) -> Vec<String> {
        let b = self.bases.read().unwrap_or_else(|e| e.into_inner());
        let Some(rel) = b.iter().find_map(|base| url.strip_prefix(base.as_str())) else {
            return vec![url.to_owned()];
        };
        let n = b.len();
        let p = self.preferred.load(Ordering::Relaxed) % n;
        (0..n).map(|k| format!("{}{rel}", b[(p + k) % n])).collect()
    }

    fn worked(&self, url: &str) {
        let b = self.bases.read().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = b.iter().position(|base| url.starts_with(base.as_str())) {
            self.preferred.store(i, Ordering::Relaxed);
        }
    }

    /// GET with failover: the first response that is not a connection error or a 5xx.
    pub async fn get(
        &self,
        url: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<reqwest::Response, String> {
        let mut last = String::from("no URL");
        let candidates = self.candidates(url);
        for u in candidates.iter().cloned() {
            let mut req = self.http.get(&u);
            if let Some((a, b)) = range {
                let v = match b {
                    Some(b) => format!("bytes={a}-{b}"),
                    None => format!("bytes={a}-"),
                };
                req = req.header(reqwest::header::RANGE, v);
            }
            // The last base gets the full read timeout: there is nowhere else to go.
            let wait = if u == *candidates.last().unwrap_or(&u) { READ_TIMEOUT } else { RESPONSE_TIMEOUT };
            match tokio::time::timeout(wait, req.send()).await {
                Ok(Ok(r)) if r.status().is_server_error() => last = format!("{u}: HTTP {}", r.status()),
                Ok(Ok(r)) => {
                    self.worked(&u);
                    return Ok(r);
                }
                Ok(Err(e)) => last = format!("{u}: {e}"),
                Err(_) => last = format!("{u}: no response in {wait:?}"),
            }
        }
        Err(last)
    }

    /// A whole small body (playlists, manifests), at most `max` bytes.
    pub async fn get_text(&self, url: &str, max: usize) -> Result<(String, Bytes), String> {
        let mut r = self.get(url, None).await?;
        if !r.status().is_success() {
            return Err(format!("{url}: HTTP {}", r.status()));
        }
        let final_url = r.url().to_string();
        let mut body = Vec::new();
        loop {
            match tokio::time::timeout(READ_TIMEOUT, r.chunk()).await {
                Ok(Ok(Some(c))) => {
                    if body.len() + c.len() > max {
                        return Err(format!("{url}: body over {max} bytes"));
                    }
                    body.extend_from_slice(&c);
                }
                Ok(Ok(None)) => return Ok((final_url, Bytes::from(body))),
                Ok(Err(e)) => return Err(format!("{url}: {e}")),
                Err(_) => return Err(format!("{url}: read timed out")),
            }
        }
    }
}

/// Total size of the object from a response: Content-Length of a 200, or the total of a
/// Content-Range.
pub fn total_size(r: &reqwest::Response) -> Option<u64> {
    if r.status() == reqwest::StatusCode::PARTIAL_CONTENT {
        let cr = r.headers().get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
        cr.rsplit('/').next()?.trim().parse().ok()
    } else {
        r.content_length()
    }
}

/// Run one engine fetch, streaming its events to the core. Abort the task to cancel it.
pub fn spawn_fetch(
    cdn: Arc<Cdn>,
    url: String,
    range: Option<(u64, Option<u64>)>,
    gen: u32,
    id: HttpId,
    core: mpsc::UnboundedSender<CoreMsg>,
) -> tokio::task::AbortHandle {
    let task = tokio::spawn(async move {
        let send = |event: HttpEvent| core.send(CoreMsg::Http { gen, id, event }).is_ok();
        let mut r = match cdn.get(&url, range).await {
            Ok(r) => r,
            Err(e) => {
                send(HttpEvent::Failed(e));
                return;
            }
        };
        let status = r.status().as_u16();
        if !send(HttpEvent::Response { status, total: total_size(&r) }) {
            return;
        }
        if !(200..300).contains(&status) {
            return;
        }
        loop {
            match tokio::time::timeout(READ_TIMEOUT, r.chunk()).await {
                Ok(Ok(Some(c))) => {
                    if !send(HttpEvent::Data(c)) {
                        return;
                    }
                }
                Ok(Ok(None)) => {
                    send(HttpEvent::Done);
                    return;
                }
                Ok(Err(e)) => {
                    send(HttpEvent::Failed(e.to_string()));
                    return;
                }
                Err(_) => {
                    send(HttpEvent::Failed("read timed out".into()));
                    return;
                }
            }
        }
    });
    task.abort_handle()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_candidates() {
        let c = Cdn::new("http://a/live/demo/".into()).expect("client");
        c.add_bases(&["http://b/live/demo".into(), "http://a/live/demo/".into()]);
        assert_eq!(
            c.candidates("http://a/live/demo/720p/5.ts"),
            ["http://a/live/demo/720p/5.ts", "http://b/live/demo/720p/5.ts"]
        );
        c.worked("http://b/live/demo/720p/5.ts");
        assert_eq!(c.candidates("http://a/live/demo/x"), ["http://b/live/demo/x", "http://a/live/demo/x"]);
        assert_eq!(c.candidates("http://elsewhere/x"), ["http://elsewhere/x"]);
    }

    #[tokio::test]
    async fn a_slow_base_is_left_for_the_next() {
        // Base a accepts connections and never answers; base b serves.
        let slow = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let a = format!("http://{}/live/demo/", slow.local_addr().expect("addr"));
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = slow.accept().await {
                held.push(s);
            }
        });
        let app = axum::Router::new().route("/live/demo/x.ts", axum::routing::get(|| async { "segment" }));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let b = format!("http://{}/live/demo/", l.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(l, app).await });
        let c = Cdn::new(a.clone()).expect("client");
        c.add_bases(std::slice::from_ref(&b));
        let t = std::time::Instant::now();
        let r = c.get(&format!("{a}x.ts"), None).await.expect("served by b");
        assert!(r.url().as_str().starts_with(&b), "{}", r.url());
        assert!(t.elapsed() < RESPONSE_TIMEOUT + Duration::from_secs(1), "{:?}", t.elapsed());
        // b is preferred from now on: no more waiting on a.
        let t = std::time::Instant::now();
        c.get(&format!("{a}x.ts"), None).await.expect("served by b");
        assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
    }
}
