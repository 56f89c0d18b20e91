//! `POST /v1/join` with retries in the background. Until a join succeeds the client plays
//! from the CDN only; when one does, the core switches P2P on.

use std::time::Duration;

use shoal_proto::api::{ClientInfo, JoinRequest, JoinResponse, API_VERSION};
use tokio::sync::mpsc;

use crate::msg::CoreMsg;

const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BODY: usize = 256 * 1024;

pub async fn join_once(
    http: &reqwest::Client,
    api: &str,
    stream: &str,
    token: Option<&str>,
) -> Result<JoinResponse, String> {
    let url = format!("{}/v1/join", api.trim_end_matches('/'));
    let body = JoinRequest {
        stream: stream.to_owned(),
        token: token.map(str::to_owned),
        client: ClientInfo {
            platform: Some(std::env::consts::OS.to_owned()),
            sdk: Some("shoal-native".into()),
            sdk_version: Some(env!("CARGO_PKG_VERSION").into()),
            ..Default::default()
        },
    };
    let send = http.post(&url).json(&body).send();
    let mut r = match tokio::time::timeout(JOIN_TIMEOUT, send).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(format!("{url}: {e}")),
        Err(_) => return Err(format!("{url}: no answer in {JOIN_TIMEOUT:?}")),
    };
    let status = r.status();
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout(JOIN_TIMEOUT, r.chunk()).await {
            Ok(Ok(Some(c))) if body.len() + c.len() <= MAX_BODY => body.extend_from_slice(&c),
            Ok(Ok(Some(_))) => return Err(format!("{url}: response over {MAX_BODY} bytes")),
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(format!("{url}: {e}")),
            Err(_) => return Err(format!("{url}: body timed out")),
        }
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err(format!("{url}: HTTP {status}: {text}"));
    }
    let resp: JoinResponse =
        serde_json::from_slice(&body).map_err(|e| format!("{url}: bad join response: {e}"))?;
    if resp.version != API_VERSION {
        return Err(format!("{url}: join response version {} (this SDK speaks {API_VERSION})", resp.version));
    }
    if !shoal_proto::ids::valid_name(&resp.peer_id) {
        return Err(format!("{url}: invalid peer id in join response"));
    }
    Ok(resp)
}

/// Join until it works (backoff 1 s doubling to 30 s), trying the alternative API URLs a
/// previous response named. Reports the response to the core, then ends. Abort to cancel.
pub fn spawn(
    http: reqwest::Client,
    apis: Vec<String>,
    stream: String,
    token: Option<String>,
    core: mpsc::UnboundedSender<CoreMsg>,
) -> tokio::task::AbortHandle {
    spawn_after(Duration::ZERO, http, apis, stream, token, core)
}

/// [`spawn`] after `delay` (a join again later: the cluster had no live tracker).
pub fn spawn_after(
    delay: Duration,
    http: reqwest::Client,
    mut apis: Vec<String>,
    stream: String,
    token: Option<String>,
    core: mpsc::UnboundedSender<CoreMsg>,
) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let mut backoff = Duration::from_secs(1);
        let mut i = 0usize;
        loop {
            let api = apis[i % apis.len()].clone();
            match join_once(&http, &api, &stream, token.as_deref()).await {
                Ok(resp) => {
                    for a in &resp.api {
                        if !apis.contains(a) {
                            apis.push(a.clone());
                        }
                    }
                    let _ = core.send(CoreMsg::Joined(Box::new(resp)));
                    return;
                }
                Err(e) => tracing::warn!("join failed (playing from the CDN meanwhile): {e}"),
            }
            i += 1;
            if i.is_multiple_of(apis.len()) {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            if core.is_closed() {
                return;
            }
        }
    })
    .abort_handle()
}
