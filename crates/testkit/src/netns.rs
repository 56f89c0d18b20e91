//! Network namespaces of the test's own (`ip netns`), deleted on drop.
//!
//! A namespace with only `lo` is not enough for WebRTC: Chromium gathers no ICE candidate at
//! all. [`Netns::new`] therefore also puts a veth pair inside the namespace, gives one end an
//! address and adds a default route through it (docs/testing.md tells why). Nothing is attached
//! to the machine's own namespace.

use std::ffi::OsStr;
use std::fs::File;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::sys;

/// Prefix of every namespace this kit makes: `shoal-<pid>-<n>[-<node>]`.
const PREFIX: &str = "shoal-";

/// The veth end inside a [`Netns::new`] namespace that carries the address.
pub const VETH_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const VETH_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// Fails with a reason a developer can act on when the test cannot make namespaces here.
pub fn require_netns_support() -> Result<()> {
    if !sys::is_root() {
        bail!(
            "this test needs root: it builds network namespaces with `ip netns` (run it as root, \
             as `make test` and CI do; see docs/testing.md)"
        );
    }
    if Command::new("ip").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        bail!("`ip` (iproute2) is not installed: run scripts/install-deps.sh");
    }
    Ok(())
}

/// A network namespace, deleted (after killing every process in it) when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
    addr: Option<Ipv4Addr>,
}

impl Netns {
    /// A namespace with `lo` up and a veth pair inside it: `v0` = [`VETH_ADDR`]/24, `v1` up,
    /// default route via 10.77.0.2 on `v0`. Servers and Chromium inside it can use either
    /// 127.0.0.1 or [`Netns::addr`]; WebRTC host candidates use the latter.
    pub fn new() -> Result<Netns> {
        let mut ns = Netns::bare(None)?;
        ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"])?;
        ns.ip(&["addr", "add", &format!("{VETH_ADDR}/24"), "dev", "v0"])?;
        ns.ip(&["link", "set", "v0", "up"])?;
        ns.ip(&["link", "set", "v1", "up"])?;
        ns.ip(&["route", "add", "default", "via", &VETH_GATEWAY.to_string(), "dev", "v0"])?;
        ns.set_addr(VETH_ADDR);
        Ok(ns)
    }

    /// A namespace with only `lo` up; `tag` (if any) is appended to the name for readability.
    pub(crate) fn bare(tag: Option<&str>) -> Result<Netns> {
        require_netns_support()?;
        SWEEP.call_once(sweep_stale);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut name = format!("{PREFIX}{}-{n}", std::process::id());
        if let Some(tag) = tag {
            name.push('-');
            name.push_str(tag);
        }
        run_checked(Command::new("ip").args(["netns", "add", &name]))
            .with_context(|| format!("creating network namespace {name}"))?;
        let ns = Netns { name, addr: None };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub(crate) fn set_addr(&mut self, addr: Ipv4Addr) {
        self.addr = Some(addr);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's own non-loopback address (veth end or LAN interface).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr.unwrap_or(Ipv4Addr::LOCALHOST)
    }

    /// `ip -n <ns> <args>`, checked.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run_checked(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`, which execs the
    /// program in place, so the child's pid is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `program args` inside the namespace to completion; fails on a non-zero exit.
    /// Returns stdout.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        run_checked(self.command(program).args(args))
    }

    /// Runs `f` on a new thread that lives in this namespace: sockets it creates belong to the
    /// namespace even after they are handed to other threads.
    pub fn spawn_thread<F, T>(&self, f: F) -> Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let file = self.open()?;
        let (tx, rx) = mpsc::sync_channel(1);
        let name = self.name.clone();
        let handle = std::thread::Builder::new().name(format!("in-{name}")).spawn(move || {
            let entered = sys::enter_netns(&file);
            let ok = entered.is_ok();
            // The receiver waits for this message; if it is gone the caller has already failed.
            let _ = tx.send(entered);
            if !ok {
                panic!("thread did not enter namespace {name}; the spawner reported why");
            }
            f()
        })?;
        match rx.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(e)) => Err(e).with_context(|| format!("setns into {}", self.name)),
            Err(_) => bail!("thread for namespace {} died before entering it", self.name),
        }
    }

    /// A tokio runtime whose worker and blocking threads all live in this namespace, for
    /// running native Shoal code (peers, servers) in-process as if on this host.
    pub fn tokio_runtime(&self, worker_threads: usize) -> Result<NsRuntime> {
        let file = Arc::new(self.open()?);
        // Fail here, not inside a runtime thread, if entering is impossible.
        self.spawn_thread(|| ())?.join().map_err(|_| anyhow::anyhow!("probe thread panicked"))?;
        let name = self.name.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name(format!("rt-{name}"))
            .enable_all()
            .on_thread_start(move || {
                if let Err(e) = sys::enter_netns(&file) {
                    panic!("runtime thread could not enter namespace {name}: {e}");
                }
            })
            .build()
            .context("building tokio runtime")?;
        Ok(NsRuntime { rt: Some(rt) })
    }

    /// Pids of the processes whose network namespace this is.
    pub fn pids(&self) -> Vec<u32> {
        pids_of(&self.name)
    }

    fn open(&self) -> Result<File> {
        let path = format!("/run/netns/{}", self.name);
        File::open(&path).with_context(|| format!("opening {path}"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_all_in(&self.name);
        if let Err(e) = run_checked(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("testkit: deleting namespace {}: {e:#}", self.name);
        }
    }
}

fn pids_of(ns: &str) -> Vec<u32> {
    let out = Command::new("ip").args(["netns", "pids", ns]).stderr(Stdio::null()).output();
    let me = std::process::id();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|&p| p != me)
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn kill_all_in(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = pids_of(ns);
        if pids.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            eprintln!("testkit: processes {pids:?} in {ns} survived SIGKILL for 5 s");
            return;
        }
        for p in pids {
            if let Ok(p) = i32::try_from(p) {
                // Already gone is fine.
                let _ = sys::send_signal(p, sys::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deletes namespaces left by test processes that died without dropping them (SIGKILL,
/// timeouts): `shoal-<pid>-...` whose pid is gone.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !sys::process_alive(pid) {
            kill_all_in(name);
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Runs a command, failing with its stderr when it exits non-zero. Returns stdout.
pub(crate) fn run_checked(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out: Output = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A tokio runtime whose threads are inside one namespace (see [`Netns::tokio_runtime`]).
///
/// Futures must run on its worker threads to be inside: [`NsRuntime::block_on`] spawns the
/// future and waits for it, unlike `Runtime::block_on`, which polls it on the calling thread.
/// Dropping it gives running tasks 5 s to finish: a task that never ends (a source loop nobody
/// cancelled) must not hang the test.
#[derive(Debug)]
pub struct NsRuntime {
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl NsRuntime {
    /// Runs `fut` on a worker thread (inside the namespace) and waits for its output. A panic
    /// in `fut` is resumed here.
    pub fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = self.runtime();
        match rt.block_on(rt.spawn(fut)) {
            Ok(out) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("task in namespace runtime was cancelled: {e}"),
        }
    }

    /// For `spawn`: tasks spawned through it run inside the namespace.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime().handle()
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("the runtime is only taken out in drop")
    }
}
