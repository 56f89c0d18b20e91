//! What an app tells the SDK. Every field has a default except the stream URL; the same
//! structure is the JSON accepted by the C ABI (`shoal_client_start`) and the UniFFI binding.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Environment variable that makes this client corrupt every chunk it uploads. **Test only**:
/// it exists so the test suite can prove that lying peers are caught and dropped. Never set it
/// in production.
pub const TEST_LIE_ENV: &str = "SHOAL_TEST_LIE";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Master (or media) playlist URL on the CDN. Required.
    pub url: String,
    /// API base URL (`http://host:port`); the SDK joins at `{api}/v1/join`. Several URLs,
    /// comma-separated, are tried in order (API nodes of a cluster). Without it the client
    /// plays from the CDN only.
    pub api: Option<String>,
    /// Viewer token for the join request.
    pub token: Option<String>,
    /// Stream name. Default: the name of the directory holding the master playlist
    /// (`.../live/demo/master.m3u8` → `demo`).
    pub stream: Option<String>,
    /// Where the local HTTP proxy listens. Default `127.0.0.1:0` (a free port).
    pub listen: SocketAddr,
    /// The UDP socket that carries every peer connection and the STUN probe. Default
    /// `0.0.0.0:0`: host candidates are the machine's interface addresses (IPv4).
    pub udp_bind: SocketAddr,
    /// Run a built-in player that consumes the stream in real time (servers, demos, tests).
    pub headless: bool,
    /// Headless: the rendition to play (default: the one with the highest bandwidth).
    pub rendition: Option<String>,
    /// Headless: stop after this many seconds of wall time (default: run until stopped).
    pub duration_s: Option<f64>,
    /// Most peer connections at once (open or being set up).
    pub max_peers: u32,
    /// Engine settings applied on top of the API's overrides (same schema as
    /// `shoal_engine::Config`).
    pub engine: serde_json::Map<String, serde_json::Value>,
    /// STUN URLs (`stun:host:port`) used instead of the API's.
    pub stun: Vec<String>,
    /// Milliseconds between status lines of the headless player (0 = none).
    pub status_interval_ms: u64,
    /// Give up on a peer connection that has not opened its DataChannel after this long.
    pub connect_timeout_ms: u64,
    /// Test only (see [`TEST_LIE_ENV`]): corrupt every chunk sent to peers.
    #[serde(skip_serializing_if = "is_false")]
    pub test_lie: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            url: String::new(),
            api: None,
            token: None,
            stream: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            udp_bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            headless: false,
            rendition: None,
            duration_s: None,
            max_peers: 12,
            engine: serde_json::Map::new(),
            stun: Vec::new(),
            status_interval_ms: 5_000,
            connect_timeout_ms: 15_000,
            test_lie: false,
        }
    }
}

impl ClientConfig {
    pub fn new(url: impl Into<String>) -> Self {
        ClientConfig { url: url.into(), ..Default::default() }
    }

    /// Check what can be checked before starting.
    /// The configured API base URLs, in order.
    pub fn api_urls(&self) -> Vec<String> {
        self.api
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn validate(&self) -> Result<(), String> {
        let u = reqwest::Url::parse(&self.url).map_err(|e| format!("url {:?}: {e}", self.url))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("url {:?}: only http and https are supported", self.url));
        }
        for api in self.api_urls() {
            reqwest::Url::parse(&api).map_err(|e| format!("api {api:?}: {e}"))?;
        }
        if let Some(s) = &self.stream {
            if !shoal_proto::ids::valid_name(s) {
                return Err(format!("stream {s:?}: use 1-64 of [A-Za-z0-9_.-]"));
            }
        }
        if self.max_peers > 48 {
            return Err("max_peers must be at most 48".into());
        }
        if self.duration_s.is_some_and(|d| !(d > 0.0 && d.is_finite())) {
            return Err("duration_s must be positive".into());
        }
        Ok(())
    }

    /// The stream name: explicit, or the master playlist's directory name.
    pub fn stream_name(&self) -> Option<String> {
        if let Some(s) = &self.stream {
            return Some(s.clone());
        }
        let u = reqwest::Url::parse(&self.url).ok()?;
        let mut segs: Vec<&str> = u.path_segments()?.collect();
        segs.pop();
        segs.into_iter().rev().find(|s| shoal_proto::ids::valid_name(s)).map(str::to_owned)
    }

    /// The lying flag, from the config or the environment.
    pub(crate) fn lies(&self) -> bool {
        self.test_lie || std::env::var(TEST_LIE_ENV).is_ok_and(|v| v == "1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_api_urls() {
        let mut c = ClientConfig::new("http://127.0.0.1:8080/live/demo/master.m3u8");
        assert!(c.api_urls().is_empty());
        c.api = Some(" http://a:1 , http://b:2,".into());
        assert_eq!(c.api_urls(), ["http://a:1", "http://b:2"]);
        assert_eq!(c.validate(), Ok(()));
        c.api = Some("http://a:1,not a url".into());
        assert!(c.validate().is_err());
    }

    #[test]
    fn stream_name_from_url() {
        let c = ClientConfig::new("http://127.0.0.1:8080/live/demo/master.m3u8");
        assert_eq!(c.stream_name().as_deref(), Some("demo"));
        let mut c = ClientConfig::new("http://h/x.m3u8");
        assert_eq!(c.stream_name(), None);
        c.stream = Some("s1".into());
        assert_eq!(c.stream_name().as_deref(), Some("s1"));
    }

    #[test]
    fn json_defaults_and_unknown_fields() {
        let c: ClientConfig =
            serde_json::from_str(r#"{"url":"http://h/live/demo/master.m3u8","headless":true}"#)
                .expect("parses");
        assert!(c.headless);
        assert_eq!(c.max_peers, 12);
        assert!(c.validate().is_ok());
        assert!(serde_json::from_str::<ClientConfig>(r#"{"url":"x","nope":1}"#).is_err());
        assert!(ClientConfig::new("ftp://h/x").validate().is_err());
    }
}
