//! The UniFFI face (Kotlin, Swift): one object, `ShoalClient`, built from the same JSON
//! config as the C ABI.

use std::sync::{Arc, Mutex};

use crate::runner::Runner;

#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum ShoalError {
    #[error("{message}")]
    Failed { message: String },
}

/// A running Shoal client: give `local_url()` to ExoPlayer / AVPlayer.
#[derive(uniffi::Object)]
pub struct ShoalClient {
    runner: Mutex<Runner>,
    url: String,
}

#[uniffi::export]
impl ShoalClient {
    /// Start from a JSON config (`{"url": "...", "api": "...", "token": "..."}`).
    #[uniffi::constructor]
    pub fn new(config_json: String) -> Result<Arc<Self>, ShoalError> {
        let runner =
            Runner::start(&config_json).map_err(|e| ShoalError::Failed { message: format!("{e:#}") })?;
        let url = runner.local_url().to_owned();
        Ok(Arc::new(ShoalClient { runner: Mutex::new(runner), url }))
    }

    pub fn local_url(&self) -> String {
        self.url.clone()
    }

    pub fn stats_json(&self) -> String {
        self.runner.lock().unwrap_or_else(|e| e.into_inner()).stats_json()
    }

    /// Stop (idempotent); returns the final report as JSON.
    pub fn stop(&self) -> String {
        let r = self.runner.lock().unwrap_or_else(|e| e.into_inner()).stop();
        serde_json::to_string(&r).unwrap_or_else(|_| "{}".into())
    }
}

/// The SDK version.
#[uniffi::export]
pub fn shoal_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
