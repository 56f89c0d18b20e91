//! `shoal serve`: Shoal's server roles (API, tracker + signaling, STUN, pingback) in one
//! process, or a chosen subset (`--roles`) for a cluster.
//!
//! [`start`] runs the roles inside an existing tokio runtime and returns a handle, so
//! `shoal demo` can run them next to the origin in one process.

mod config;
mod server;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

#[allow(unused_imports)] // the in-process surface for `shoal demo`
pub use config::{load, PingbackConfig, Role, ServeConfig, ServeSection, Sources};
#[allow(unused_imports)]
pub use server::{metrics_handle, start, ticket_verifier, HttpListener, ServeHandle};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file (TOML). See `--print-config` for every key and its default.
    #[arg(long, short = 'c', env = "SHOAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the full default configuration as commented TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Roles to run, comma-separated: api, tracker, stun, pingback (default: all).
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Shared HTTP listener (serve.listen), e.g. 127.0.0.1:0.
    #[arg(long)]
    pub listen: Option<String>,
    /// STUN UDP address (stun.listen), e.g. 127.0.0.1:0.
    #[arg(long)]
    pub stun_listen: Option<String>,
    /// Public base URL of the shared listener (serve.public_url).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Set any configuration key: `--set api.p2p=false` (repeatable; beats file and env).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl Args {
    /// Flags as `section.key=value` overrides, in precedence order (`--set` last).
    fn overrides(&self) -> anyhow::Result<Vec<String>> {
        let mut o = Vec::new();
        if !self.roles.is_empty() {
            for r in &self.roles {
                Role::parse(r)?;
            }
            o.push(format!("serve.roles={}", self.roles.join(",")));
        }
        if let Some(l) = &self.listen {
            o.push(format!("serve.listen={l}"));
        }
        if let Some(l) = &self.stun_listen {
            o.push(format!("stun.listen={l}"));
        }
        if let Some(u) = &self.public_url {
            o.push(format!("serve.public_url={u}"));
        }
        o.extend(self.set.iter().cloned());
        Ok(o)
    }

    /// The configuration these flags, the environment and the file describe.
    pub fn load_config(&self) -> anyhow::Result<ServeConfig> {
        load(&Sources {
            file: self.config.as_deref(),
            env: std::env::vars().collect(),
            set: self.overrides()?,
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.print_config {
        print!("{}", config::default_toml());
        return Ok(());
    }
    let cfg = args.load_config()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    rt.block_on(async move {
        let mut handle = start(cfg).await?;
        let line = handle.ready_line();
        tracing::info!(roles = ?handle.roles, "{line}");
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()?;
        }
        let outcome = tokio::select! {
            r = handle.wait_any() => r,
            r = shutdown_signal() => r,
        };
        tracing::info!("shutting down");
        let stopped = handle.shutdown(Duration::from_secs(10)).await;
        outcome.and(stopped)
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok(())
    }
}
