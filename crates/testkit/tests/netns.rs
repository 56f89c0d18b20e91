//! Namespaces and processes: what they promise and that they clean up. Needs root.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use shoal_testkit::{Netns, Proc, TestDir, VETH_ADDR};

fn namespace_exists(name: &str) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list runs");
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.split_whitespace().next() == Some(name))
}

fn pid_alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; its state letter is Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn netns_has_loopback_a_veth_address_and_a_default_route() {
    let ns = Netns::new().expect("namespace");
    assert!(ns.name().starts_with(&format!("shoal-{}-", std::process::id())), "{}", ns.name());
    assert_eq!(ns.addr(), VETH_ADDR);
    let addrs = ns.run("ip", &["-4", "-o", "addr", "show"]).expect("ip addr");
    assert!(addrs.contains("lo") && addrs.contains("127.0.0.1"), "{addrs}");
    assert!(addrs.contains("v0") && addrs.contains("10.77.0.1/24"), "{addrs}");
    let routes = ns.run("ip", &["-4", "route", "show", "default"]).expect("ip route");
    assert!(routes.contains("default via 10.77.0.2 dev v0"), "{routes}");
    // Only lo, v0 and v1: nothing of the machine's own network is visible.
    let links = ns.run("ip", &["-o", "link", "show"]).expect("ip link");
    let mut names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or(""))
        .collect();
    names.sort();
    assert_eq!(names, ["lo", "v0", "v1"], "{links}");
}

#[test]
fn two_namespaces_get_different_names() {
    let a = Netns::new().expect("namespace a");
    let b = Netns::new().expect("namespace b");
    assert_ne!(a.name(), b.name());
}

#[test]
fn drop_kills_processes_inside_and_deletes_the_namespace() {
    let ns = Netns::new().expect("namespace");
    let name = ns.name().to_string();
    let mut child = ns.command("sleep").arg("600").spawn().expect("sleep starts");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ns.pids().contains(&pid) {
        assert!(Instant::now() < deadline, "sleep never showed up in {name}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(namespace_exists(&name));
    drop(ns);
    let status = child.wait().expect("reaped");
    assert!(!status.success(), "sleep 600 should have been killed, got {status}");
    assert!(!namespace_exists(&name), "{name} still listed after drop");
}

#[test]
fn namespace_is_deleted_when_the_test_panics() {
    let name = std::panic::catch_unwind(|| {
        let ns = Netns::new().expect("namespace");
        let name = ns.name().to_string();
        std::panic::panic_any(name);
    })
    .expect_err("closure panics");
    let name = name.downcast::<String>().expect("panic payload is the namespace name");
    assert!(name.starts_with("shoal-"), "{name}");
    assert!(!namespace_exists(&name), "{name} survived a panic");
}

#[test]
fn threads_and_runtimes_make_sockets_inside_the_namespace() {
    let ns = Netns::new().expect("namespace");
    let veth: SocketAddr = (VETH_ADDR, 0).into();
    // The machine's own namespace does not have the veth address ...
    assert!(UdpSocket::bind(veth).is_err(), "10.77.0.1 must not exist outside the namespace");
    // ... a thread inside it does, and its socket stays there when handed back.
    let listener = ns
        .spawn_thread(move || TcpListener::bind(veth))
        .expect("thread enters")
        .join()
        .expect("thread ran")
        .expect("bind inside the namespace");
    let port = listener.local_addr().expect("bound").port();
    // A process in the namespace connects to it; one outside could not.
    let ok = ns.run("bash", &["-c", &format!("exec 3<>/dev/tcp/{VETH_ADDR}/{port}")]);
    assert!(ok.is_ok(), "{ok:?}");
    let (_conn, peer) = listener.accept().expect("accepted");
    assert_eq!(peer.ip(), VETH_ADDR);

    let rt = ns.tokio_runtime(1).expect("runtime");
    let bound = rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(veth).await?;
        let addr = l.local_addr()?;
        let (accepted, connected) = tokio::join!(l.accept(), tokio::net::TcpStream::connect(addr));
        Ok::<_, std::io::Error>((accepted?.1, connected?.local_addr()?))
    });
    let (seen, local) = bound.expect("runtime tasks run inside the namespace");
    assert_eq!(seen, local);
    assert_eq!(seen.ip(), VETH_ADDR);
}

#[test]
fn proc_reads_the_readiness_line_and_logs_both_streams() {
    let dir = TestDir::new("proc_reads_the_readiness_line").expect("test dir");
    let ns = Netns::new().expect("namespace");
    let script =
        "echo starting; echo warming up >&2; echo 'SHOAL_DEMO_READY http://10.77.0.1:9 extra=1'; sleep 600";
    let mut p = Proc::builder("demo", "bash")
        .args(["-c", script])
        .netns(&ns)
        .log_dir(dir.path())
        .spawn()
        .expect("spawn");
    let ready = p.wait_ready("DEMO", Duration::from_secs(10)).expect("ready");
    assert_eq!(ready.url, "http://10.77.0.1:9");
    assert_eq!(ready.fields, ["http://10.77.0.1:9", "extra=1"]);
    let pid = p.pid();
    assert!(ns.pids().contains(&pid), "the process runs inside the namespace");
    let stderr = std::fs::read_to_string(p.stderr_path()).expect("stderr log");
    assert!(stderr.contains("warming up"), "{stderr}");
    let stdout = std::fs::read_to_string(p.stdout_path()).expect("stdout log");
    assert!(stdout.starts_with("starting\nSHOAL_DEMO_READY"), "{stdout}");
    let started = Instant::now();
    drop(p);
    assert!(started.elapsed() < Duration::from_secs(5), "stop took {:?}", started.elapsed());
    assert!(!pid_alive(pid), "process {pid} survived drop");
}

#[test]
fn proc_reports_an_early_exit_with_its_log_tail() {
    let dir = TestDir::new("proc_reports_an_early_exit").expect("test dir");
    let mut p = Proc::builder("crasher", "bash")
        .args(["-c", "echo 'config: bad port' >&2; exit 3"])
        .log_dir(dir.path())
        .spawn()
        .expect("spawn");
    let err = p.wait_ready("CRASHER", Duration::from_secs(10)).expect_err("never ready");
    let msg = format!("{err:#}");
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(msg.contains("config: bad port"), "{msg}");
}

#[test]
fn proc_times_out_waiting_and_stop_escalates_to_sigkill() {
    let dir = TestDir::new("proc_times_out_waiting").expect("test dir");
    // Ignores SIGTERM, so only the SIGKILL after the grace period ends it.
    let mut p = Proc::builder("stubborn", "bash")
        .args(["-c", "trap '' TERM; echo up; while true; do sleep 0.1; done"])
        .log_dir(dir.path())
        .spawn()
        .expect("spawn");
    let err = p.wait_ready("STUBBORN", Duration::from_millis(500)).expect_err("no readiness line");
    assert!(format!("{err:#}").contains("no matching stdout line"), "{err:#}");
    let started = Instant::now();
    let status = p.stop(Duration::from_millis(300)).expect("stopped");
    assert!(!status.success());
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[test]
fn dropping_a_namespace_runtime_does_not_wait_for_endless_tasks() {
    let ns = Netns::new().expect("namespace");
    let rt = ns.tokio_runtime(1).expect("runtime");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    // Bounded so the thread itself ends soon after the test.
    rt.handle().spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !flag.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let started = Instant::now();
    drop(rt);
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(took < Duration::from_secs(8), "runtime drop took {took:?}");
}
