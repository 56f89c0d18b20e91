//! The UDP side of candidate gathering, which str0m leaves to the application: the host
//! addresses of the socket, which of them a datagram arrived on, and STUN URLs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// One IPv4 interface address with its netmask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iface {
    pub addr: Ipv4Addr,
    pub mask: Ipv4Addr,
}

impl Iface {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let m = u32::from(self.mask);
        u32::from(self.addr) & m == u32::from(ip) & m
    }
}

/// The machine's IPv4 interface addresses that are up (loopback included).
#[cfg(unix)]
pub fn interfaces() -> Vec<Iface> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we own until freeifaddrs; we only read it.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() {
                continue;
            }
            if ifa.ifa_flags & (libc::IFF_UP as libc::c_uint) == 0 {
                continue;
            }
            if i32::from((*ifa.ifa_addr).sa_family) != libc::AF_INET {
                continue;
            }
            let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
            let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
            out.push(Iface {
                addr: Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                mask: Ipv4Addr::from(u32::from_be(m.sin_addr.s_addr)),
            });
        }
        libc::freeifaddrs(head);
    }
    out.dedup();
    out
}

#[cfg(not(unix))]
pub fn interfaces() -> Vec<Iface> {
    Vec::new()
}

/// The local addresses a socket bound to `bound` is reachable on, as host candidates.
/// A socket bound to one address has that one; a wildcard socket has every interface address,
/// loopback only when there is nothing else (peers elsewhere can never reach it).
#[derive(Clone, Debug)]
pub struct HostAddrs {
    port: u16,
    ifaces: Vec<Iface>,
}

impl HostAddrs {
    pub fn new(bound: SocketAddr) -> HostAddrs {
        let port = bound.port();
        let ifaces = match bound.ip() {
            IpAddr::V4(ip) if !ip.is_unspecified() => {
                vec![Iface { addr: ip, mask: Ipv4Addr::new(255, 255, 255, 255) }]
            }
            _ => {
                let all = interfaces();
                let outside: Vec<Iface> = all
                    .iter()
                    .copied()
                    .filter(|i| !i.addr.is_loopback() && !i.addr.is_link_local())
                    .collect();
                if outside.is_empty() {
                    vec![Iface { addr: Ipv4Addr::LOCALHOST, mask: Ipv4Addr::new(255, 0, 0, 0) }]
                } else {
                    outside
                }
            }
        };
        HostAddrs { port, ifaces }
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.ifaces.iter().map(|i| SocketAddr::from((i.addr, self.port))).collect()
    }

    /// Which host address a datagram from `source` arrived on: the interface whose subnet
    /// holds the source, else the first (default-route) one. Without per-packet destination
    /// information this is right for hosts with one outside interface, which is what phones,
    /// set-top boxes and the test topologies have.
    pub fn destination_for(&self, source: SocketAddr) -> SocketAddr {
        let ip = match source.ip() {
            IpAddr::V4(v) => v,
            IpAddr::V6(v) => v.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
        };
        let pick = self
            .ifaces
            .iter()
            .find(|i| i.contains(ip))
            .or_else(|| self.ifaces.iter().find(|i| ip.is_loopback() && i.addr.is_loopback()))
            .or_else(|| self.ifaces.first());
        let addr = pick.map_or(Ipv4Addr::LOCALHOST, |i| i.addr);
        SocketAddr::from((addr, self.port))
    }

    /// The host address to use as the base of a server-reflexive candidate learned from `server`.
    pub fn base_for(&self, server: SocketAddr) -> SocketAddr {
        self.destination_for(server)
    }
}

/// Parse `stun:host:port` (or `host:port`); the port defaults to 3478.
pub fn parse_stun_url(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("stun:").unwrap_or(url);
    let rest = rest.split('?').next().unwrap_or(rest);
    if rest.is_empty() {
        return None;
    }
    if let Some(v6) = rest.strip_prefix('[') {
        let (host, tail) = v6.split_once(']')?;
        let port = tail.strip_prefix(':').map_or(Some(3478), |p| p.parse().ok())?;
        return Some((host.to_owned(), port));
    }
    match rest.rsplit_once(':') {
        Some((h, p)) => Some((h.to_owned(), p.parse().ok()?)),
        None => Some((rest.to_owned(), 3478)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_urls() {
        assert_eq!(parse_stun_url("stun:127.0.0.1:3478"), Some(("127.0.0.1".into(), 3478)));
        assert_eq!(parse_stun_url("stun:example.org"), Some(("example.org".into(), 3478)));
        assert_eq!(parse_stun_url("stun:[::1]:5000"), Some(("::1".into(), 5000)));
        assert_eq!(parse_stun_url("stun:h:x"), None);
        assert_eq!(parse_stun_url("stun:"), None);
    }

    #[test]
    fn host_addrs_of_bound_and_wildcard_sockets() {
        let h = HostAddrs::new("127.0.0.1:4000".parse().expect("addr"));
        assert_eq!(h.addrs(), vec!["127.0.0.1:4000".parse::<SocketAddr>().expect("addr")]);
        assert_eq!(h.destination_for("127.0.0.1:9".parse().expect("addr")).port(), 4000);
        let w = HostAddrs::new("0.0.0.0:4001".parse().expect("addr"));
        assert!(!w.addrs().is_empty(), "some interface is up");
        assert!(interfaces().iter().any(|i| i.addr.is_loopback()), "lo is listed");
    }
}
