//! A `shoal origin --synthetic` child for tests: started, and read up to its ready line.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::{Netns, Proc};

/// A ready synthetic origin: the process, the key it signs segment entries with, its base URL
/// (no trailing slash) and the stream's master playlist URL.
pub struct SyntheticOrigin {
    pub proc: Proc,
    pub key: String,
    pub url: String,
    pub master: String,
}

impl SyntheticOrigin {
    /// `bin origin --synthetic --listen <listen> --ladder <ladder>`, in `ns` if given, logging
    /// into `dir`; waits for `SHOAL_ORIGIN_KEY` and `SHOAL_ORIGIN_READY`.
    pub fn start(bin: &str, dir: &Path, ns: Option<&Netns>, listen: &str, ladder: &str) -> Result<Self> {
        let mut b = Proc::builder("origin", bin)
            .args(["origin", "--synthetic", "--listen", listen, "--ladder", ladder])
            .log_dir(dir);
        if let Some(ns) = ns {
            b = b.netns(ns);
        }
        let mut proc = b.spawn()?;
        let key_line = proc.wait_for_line(|l| l.starts_with("SHOAL_ORIGIN_KEY "), Duration::from_secs(60))?;
        let key = key_line
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow!("origin key line without a key: {key_line:?}"))?
            .to_owned();
        let ready = proc.wait_ready("ORIGIN", Duration::from_secs(60))?;
        let url = ready.url.trim_end_matches('/').to_owned();
        let master = ready.fields.get(1).cloned().context("origin ready line without the master URL")?;
        Ok(SyntheticOrigin { proc, key, url, master })
    }
}
