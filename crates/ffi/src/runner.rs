//! A client with its own tokio runtime: the blocking face both bindings share.

use shoal_peer::{Client, ClientConfig, Report, StatsSnapshot};

pub struct Runner {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    local_url: String,
}

impl Runner {
    /// Parse the JSON config (see `shoal_peer::ClientConfig`) and start the client.
    pub fn start(config_json: &str) -> anyhow::Result<Runner> {
        let cfg: ClientConfig = serde_json::from_str(config_json)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("shoal")
            .enable_all()
            .build()?;
        let client = rt.block_on(Client::start(cfg))?;
        let local_url = client.local_url().to_owned();
        Ok(Runner { rt, client: Some(client), local_url })
    }

    pub fn local_url(&self) -> &str {
        &self.local_url
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.client.as_ref().map(|c| c.stats()).unwrap_or_default()
    }

    pub fn stats_json(&self) -> String {
        serde_json::to_string(&self.stats()).unwrap_or_else(|_| "{}".into())
    }

    /// Stop the client (idempotent) and return its final report.
    pub fn stop(&mut self) -> Report {
        match self.client.take() {
            Some(c) => self.rt.block_on(c.stop()),
            None => Report::default(),
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
