//! A real `redis-server` (Debian's, installed by `scripts/install-deps.sh`) for cluster tests:
//! on a port the test picked, no persistence, stopped (or killed and started again on the same
//! port, to test reconnection) at will.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::netns::Netns;
use crate::process::Proc;

/// A running (or stopped) `redis-server`.
#[derive(Debug)]
pub struct RedisServer {
    proc: Option<Proc>,
    bind: String,
    port: u16,
    log_dir: PathBuf,
    netns: Option<String>,
    starts: u32,
}

/// A TCP port free on 127.0.0.1 right now (of this namespace).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn binary() -> Result<&'static str> {
    for p in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"] {
        if Path::new(p).exists() {
            return Ok(p);
        }
    }
    Err(anyhow!("redis-server is not installed: run scripts/install-deps.sh (Debian package redis-server)"))
}

impl RedisServer {
    /// Start on 127.0.0.1 and a free port of the test's own namespace.
    pub fn start(log_dir: &Path) -> Result<RedisServer> {
        Self::start_on(log_dir, None, "127.0.0.1", free_port()?)
    }

    /// Start inside `ns` (when given), bound to `bind:port`.
    pub fn start_on(log_dir: &Path, ns: Option<&Netns>, bind: &str, port: u16) -> Result<RedisServer> {
        let mut r = RedisServer {
            proc: None,
            bind: bind.to_owned(),
            port,
            log_dir: log_dir.to_owned(),
            netns: ns.map(|n| n.name().to_owned()),
            starts: 0,
        };
        r.restart_inner(ns)?;
        Ok(r)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://HOST:PORT` (the bind address; use it from the same namespace).
    pub fn url(&self) -> String {
        format!("redis://{}:{}", self.bind, self.port)
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    /// SIGKILL: the server dies without a goodbye (clients see their sockets reset).
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut p) = self.proc.take() {
            p.kill()?;
        }
        Ok(())
    }

    /// Start again on the same port, empty (it kept nothing). `ns` must be the namespace it
    /// was started in (or `None`).
    pub fn restart(&mut self, ns: Option<&Netns>) -> Result<()> {
        anyhow::ensure!(self.proc.is_none(), "redis-server is still running");
        anyhow::ensure!(
            ns.map(|n| n.name().to_owned()) == self.netns,
            "restart redis-server in the namespace it was started in"
        );
        self.restart_inner(ns)
    }

    fn restart_inner(&mut self, ns: Option<&Netns>) -> Result<()> {
        self.starts += 1;
        let name = format!("redis-{}", self.starts);
        let port = self.port.to_string();
        let mut b = Proc::builder(&name, binary()?)
            .args(["--bind", &self.bind, "--port", &port, "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--loglevel", "notice", "--databases", "1"])
            .log_dir(&self.log_dir);
        if let Some(ns) = ns {
            b = b.netns(ns);
        }
        let mut p = b.spawn()?;
        // The port may still be in TIME_WAIT's hands briefly after a kill: the line says it bound.
        p.wait_for_line(|l| l.contains("Ready to accept connections"), Duration::from_secs(20))
            .with_context(|| format!("redis-server on {}:{port}", self.bind))?;
        self.proc = Some(p);
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.kill();
        }
    }
}
