//! Child processes for tests: `shoal` subcommands, servers, node scripts. Output goes to files in
//! the test's directory; stdout lines are also watched for a readiness line.
//!
//! Readiness convention: a server prints one line `SHOAL_<ROLE>_READY <url> [more fields]` on
//! stdout once it accepts connections (e.g. `SHOAL_ORIGIN_READY http://127.0.0.1:40123 ...`).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::netns::Netns;
use crate::sys;

/// How many lines of each log a failure message or drop prints.
const TAIL_LINES: usize = 30;

/// Builds a [`Proc`].
#[derive(Debug)]
pub struct ProcBuilder {
    name: String,
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    netns: Option<String>,
    log_dir: Option<PathBuf>,
}

impl ProcBuilder {
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.envs.push((k.as_ref().to_owned(), v.as_ref().to_owned()));
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Run inside this namespace (`ip netns exec`).
    pub fn netns(mut self, ns: &Netns) -> Self {
        self.netns = Some(ns.name().to_string());
        self
    }

    /// Where `<name>.stdout.log` and `<name>.stderr.log` go (required).
    pub fn log_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.log_dir = Some(dir.as_ref().to_owned());
        self
    }

    pub fn spawn(self) -> Result<Proc> {
        let dir = self.log_dir.ok_or_else(|| anyhow!("Proc {}: log_dir not set", self.name))?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let stdout_path = dir.join(format!("{}.stdout.log", self.name));
        let stderr_path = dir.join(format!("{}.stderr.log", self.name));
        let stderr =
            File::create(&stderr_path).with_context(|| format!("creating {}", stderr_path.display()))?;
        let mut stdout_file =
            File::create(&stdout_path).with_context(|| format!("creating {}", stdout_path.display()))?;

        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        cmd.args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            // Own process group, so stopping it also stops what it spawned.
            .process_group(0);
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        // SAFETY: the closure makes one async-signal-safe syscall and allocates nothing.
        unsafe {
            cmd.pre_exec(sys::die_with_parent);
        }
        let shown = format!("{:?} {:?}", self.program, self.args);
        let mut child = cmd.spawn().with_context(|| format!("spawning {} ({shown})", self.name))?;
        let out = child.stdout.take().ok_or_else(|| anyhow!("child stdout was not piped"))?;
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::Builder::new().name(format!("stdout-{}", self.name)).spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                // A full disk loses log lines, not the test.
                let _ = writeln!(stdout_file, "{line}");
                let _ = stdout_file.flush();
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep logging.
                    continue;
                }
            }
        })?;
        Ok(Proc {
            name: self.name,
            child,
            lines: rx,
            reader: Some(reader),
            stdout_path,
            stderr_path,
            exited: None,
        })
    }
}

/// What a readiness line said.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The first field after the marker (by convention the server's base URL).
    pub url: String,
    /// Every field after the marker, the URL included.
    pub fields: Vec<String>,
    pub line: String,
}

/// A running child process, stopped (SIGTERM, then SIGKILL to its whole process group) on drop.
/// On drop it also prints the tails of its logs, which cargo shows only for a failed test.
///
/// The child is killed if the thread that spawned it exits (PR_SET_PDEATHSIG), so spawn it from
/// the test's own thread.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    lines: Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// `name` names the log files and the messages; `program` is e.g.
    /// `env!("CARGO_BIN_EXE_shoal")`.
    pub fn builder(name: &str, program: impl AsRef<OsStr>) -> ProcBuilder {
        ProcBuilder {
            name: name.to_string(),
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            cwd: None,
            netns: None,
            log_dir: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// Waits for `SHOAL_<ROLE>_READY <url> ...` on stdout (role upper-case, e.g. `"ORIGIN"`).
    pub fn wait_ready(&mut self, role: &str, timeout: Duration) -> Result<Ready> {
        let marker = format!("SHOAL_{role}_READY");
        let line = self.wait_for_line(|l| l.split_whitespace().next() == Some(marker.as_str()), timeout)?;
        let fields: Vec<String> = line.split_whitespace().skip(1).map(str::to_string).collect();
        let url = fields.first().cloned().ok_or_else(|| {
            anyhow!("{}: readiness line without a URL: {line:?}\n{}", self.name, self.log_tails())
        })?;
        Ok(Ready { url, fields, line })
    }

    /// Waits for the next stdout line (not seen by an earlier wait) matching `pred`.
    pub fn wait_for_line(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return Ok(line),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    bail!("{}: no matching stdout line within {timeout:?}\n{}", self.name, self.log_tails())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(Duration::from_secs(5)).ok();
                    bail!(
                        "{}: closed stdout (exit: {}) before printing the expected line\n{}",
                        self.name,
                        status.map_or("still running".to_string(), |s| s.to_string()),
                        self.log_tails()
                    )
                }
            }
        }
    }

    /// Every stdout line that arrived since the last read, without waiting (for tests that
    /// follow a process's status lines while doing other things).
    pub fn take_lines(&mut self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// The exit status if it has exited.
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        Ok(self.exited)
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_exit()? {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                bail!("{}: still running after {timeout:?}\n{}", self.name, self.log_tails());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to the process group, SIGKILL after `grace`. Returns how it ended.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(s) = self.try_exit()? {
            self.kill_group(sys::SIGKILL);
            return Ok(s);
        }
        self.kill_group(sys::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(s) = self.try_exit()? {
                self.kill_group(sys::SIGKILL);
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill_group(sys::SIGKILL);
        let s = self.child.wait()?;
        self.exited = Some(s);
        Ok(s)
    }

    /// SIGKILL to the process group at once (a crash, not a shutdown). Returns how it ended.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        self.kill_group(sys::SIGKILL);
        if let Some(s) = self.try_exit()? {
            return Ok(s);
        }
        let s = self.child.wait()?;
        self.exited = Some(s);
        Ok(s)
    }

    /// The last lines of stdout and stderr, labelled, for failure messages.
    pub fn log_tails(&self) -> String {
        format!(
            "--- {name} stdout ({}), last {TAIL_LINES} lines ---\n{}\n--- {name} stderr ({}), last {TAIL_LINES} lines ---\n{}",
            self.stdout_path.display(),
            tail(&self.stdout_path, TAIL_LINES),
            self.stderr_path.display(),
            tail(&self.stderr_path, TAIL_LINES),
            name = self.name,
        )
    }

    fn kill_group(&self, sig: i32) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // The group may already be empty.
            let _ = sys::send_signal(-pid, sig);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Err(e) = self.stop(Duration::from_secs(3)) {
            eprintln!("testkit: stopping {}: {e:#}", self.name);
        }
        if let Some(r) = self.reader.take() {
            // EOF follows the kill; a grandchild holding stdout open must not hang the test.
            let deadline = Instant::now() + Duration::from_secs(2);
            while !r.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
        eprintln!("{}", self.log_tails());
    }
}

/// The last `n` lines of a text file (lossy UTF-8); a note if it cannot be read.
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("testkit-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        let p = dir.join("f.log");
        std::fs::write(&p, "a\nb\nc\nd\n").expect("temp dir is writable");
        assert_eq!(tail(&p, 2), "c\nd");
        assert_eq!(tail(&p, 10), "a\nb\nc\nd");
        assert!(tail(&dir.join("missing"), 3).contains("cannot read"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
