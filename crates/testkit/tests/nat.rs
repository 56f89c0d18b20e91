//! NAT topologies: a UDP echo server on the "internet" reports the source address it sees.
//! Needs root.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_testkit::{NatKind, Netns, Topology};

const ECHO_PORTS: [u16; 3] = [7001, 7002, 7003];

/// Echo servers on `ECHO_PORTS` inside `ns`: each datagram is answered with the sender's
/// address as text. They stop when `stop` is set, or after 30 s whatever happens.
fn start_echo(ns: &Netns, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    ns.spawn_thread(move || {
        let socks: Vec<UdpSocket> = ECHO_PORTS
            .iter()
            .map(|p| {
                let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, *p))
                    .expect("echo port free in a fresh namespace");
                s.set_nonblocking(true).expect("nonblocking");
                s
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            for s in &socks {
                while let Ok((_, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(from.to_string().as_bytes(), from);
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    })
    .expect("echo thread enters the namespace")
}

/// From one socket inside `ns`, asks each echo port in turn what source address it sees.
fn observed_from(ns: &Netns, server: Ipv4Addr, ports: &'static [u16]) -> (SocketAddr, Vec<SocketAddr>) {
    ns.spawn_thread(move || {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("client socket");
        sock.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
        let local = sock.local_addr().expect("bound");
        let mut seen = Vec::new();
        for &port in ports {
            let dest = SocketAddrV4::new(server, port);
            let mut buf = [0u8; 100];
            let mut answer = None;
            for _attempt in 0..10 {
                sock.send_to(b"who am i", dest).expect("send");
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    answer = Some(
                        String::from_utf8_lossy(&buf[..n])
                            .parse::<SocketAddr>()
                            .expect("echo reply is an address"),
                    );
                    break;
                }
            }
            seen.push(answer.unwrap_or_else(|| panic!("no echo from {dest} through the NAT")));
        }
        (local, seen)
    })
    .expect("client thread enters the namespace")
    .join()
    .expect("client thread")
}

#[test]
fn udp_through_endpoint_independent_and_symmetric_nats() {
    let topo = Topology::builder()
        .lan("internet", "198.51.100.0/24")
        .host("server", "internet")
        .nat("nat-eim", NatKind::EndpointIndependent, "internet", "home-a", "192.168.10.0/24")
        .host("alice", "home-a")
        .nat("nat-sym", NatKind::Symmetric, "internet", "home-b", "192.168.20.0/24")
        .host("bob", "home-b")
        .build()
        .expect("topology");
    let server_ip = topo.addr("server");
    assert_eq!(server_ip, Ipv4Addr::new(198, 51, 100, 10));
    assert_eq!(topo.addr("nat-eim"), Ipv4Addr::new(198, 51, 100, 11));
    assert_eq!(topo.addr("alice"), Ipv4Addr::new(192, 168, 10, 10));
    assert_eq!(topo.inside_addr("nat-sym"), Some(Ipv4Addr::new(192, 168, 20, 1)));

    let stop = Arc::new(AtomicBool::new(false));
    let echo = start_echo(topo.ns("server"), stop.clone());

    // Endpoint-independent: the server sees the NAT's public address, one port for both
    // destinations.
    let (alice_local, seen) = observed_from(topo.ns("alice"), server_ip, &ECHO_PORTS[..2]);
    for s in &seen {
        assert_eq!(s.ip(), topo.addr("nat-eim"), "alice is seen as her NAT, not {s}");
    }
    assert_eq!(seen[0].port(), seen[1].port(), "EIM NAT must keep one mapping: {seen:?}");
    assert_eq!(seen[0].port(), alice_local.port(), "masquerade keeps a free source port: {seen:?}");

    // Symmetric: a new public port per destination.
    let (_, seen) = observed_from(topo.ns("bob"), server_ip, &ECHO_PORTS);
    for s in &seen {
        assert_eq!(s.ip(), topo.addr("nat-sym"), "bob is seen as his NAT, not {s}");
    }
    let mut ports: Vec<u16> = seen.iter().map(|s| s.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "symmetric NAT must map each destination to its own port: {seen:?}");

    // Inside hosts are unreachable from the internet unless they opened the mapping.
    let alice_ip = topo.addr("alice");
    let unsolicited = topo
        .ns("server")
        .spawn_thread(move || {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("socket");
            // No route: the send fails or goes nowhere; either way nothing arrives.
            let _ = s.send_to(b"hello", (alice_ip, 9));
        })
        .expect("thread");
    unsolicited.join().expect("sent");
    let routes =
        topo.ns("server").run("ip", &["-4", "route", "get", &alice_ip.to_string()]).unwrap_or_default();
    assert!(!routes.contains("via"), "server must have no route into home-a: {routes}");

    stop.store(true, Ordering::Relaxed);
    echo.join().expect("echo thread");
}

#[test]
fn nat_filters_inbound_packets_to_a_mapping_from_other_endpoints() {
    let topo = Topology::builder()
        .lan("internet", "203.0.113.0/24")
        .host("server", "internet")
        .host("stranger", "internet")
        .nat("nat", NatKind::EndpointIndependent, "internet", "home", "192.168.30.0/24")
        .host("alice", "home")
        .build()
        .expect("topology");
    let stop = Arc::new(AtomicBool::new(false));
    let echo = start_echo(topo.ns("server"), stop.clone());
    let server_ip = topo.addr("server");

    // Alice opens a mapping to the server and keeps her socket; a stranger who learns the
    // mapped address sends to it, and the server (whom she talked to) does too.
    let (tx_mapping, rx_mapping) = std::sync::mpsc::channel::<SocketAddr>();
    let (tx_go, rx_go) = std::sync::mpsc::channel::<()>();
    let alice = topo
        .ns("alice")
        .spawn_thread(move || {
            let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("socket");
            sock.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
            let mut buf = [0u8; 100];
            let mut mapped = None;
            for _ in 0..10 {
                sock.send_to(b"hi", (server_ip, ECHO_PORTS[0])).expect("send");
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    mapped = String::from_utf8_lossy(&buf[..n]).parse::<SocketAddr>().ok();
                    break;
                }
            }
            tx_mapping.send(mapped.expect("server answered")).expect("main thread listens");
            rx_go.recv().expect("main thread says go");
            // One more exchange with the server, so the window has a packet that must arrive.
            sock.send_to(b"again", (server_ip, ECHO_PORTS[0])).expect("send");
            // Collect whatever arrives for one second.
            let deadline = Instant::now() + Duration::from_secs(1);
            let mut from = Vec::new();
            while Instant::now() < deadline {
                if let Ok((_, f)) = sock.recv_from(&mut buf) {
                    from.push(f);
                }
            }
            from
        })
        .expect("alice thread");
    let mapped = rx_mapping.recv_timeout(Duration::from_secs(10)).expect("mapping learned");

    let stranger = topo
        .ns("stranger")
        .spawn_thread(move || {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("socket");
            for _ in 0..5 {
                s.send_to(b"unsolicited", mapped).expect("send");
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .expect("stranger thread");
    tx_go.send(()).expect("alice waits");
    stranger.join().expect("stranger sent");
    let received = alice.join().expect("alice thread");
    assert!(received.iter().any(|f| f.ip() == server_ip), "the server's reply must arrive: {received:?}");
    assert!(
        received.iter().all(|f| f.ip() == server_ip),
        "only the server alice talked to may reach her mapping, got {received:?}"
    );
    assert!(!received.iter().any(|f| f.ip() == topo.addr("stranger")), "{received:?}");
    stop.store(true, Ordering::Relaxed);
    echo.join().expect("echo thread");
}
