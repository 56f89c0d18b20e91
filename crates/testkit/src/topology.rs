//! Several namespaces wired into a small internet: LANs (a namespace holding a bridge), hosts on
//! them, and NAT routers between an outside LAN and an inside LAN.
//!
//! ```no_run
//! use shoal_testkit::{NatKind, Topology};
//! # fn main() -> anyhow::Result<()> {
//! let topo = Topology::builder()
//!     .lan("internet", "198.51.100.0/24")
//!     .host("server", "internet")
//!     .nat("nat-a", NatKind::EndpointIndependent, "internet", "home-a", "192.168.10.0/24")
//!     .host("alice", "home-a")
//!     .nat("nat-b", NatKind::Symmetric, "internet", "home-b", "192.168.20.0/24")
//!     .host("bob", "home-b")
//!     .build()?;
//! let server = topo.ns("server"); // a Netns: spawn processes, threads or a tokio runtime in it
//! let seen_as = topo.addr("nat-a"); // alice's traffic reaches the internet from this address
//! # Ok(()) }
//! ```
//!
//! Addressing: on each /24 the NAT router serving it (if any) is `.1`, every other attachment
//! gets `.10`, `.11`, ... in declaration order. A host's default route goes through its LAN's
//! router; on a LAN without one (the "internet") the default route is on-link, which is enough
//! for Chromium to gather host candidates. Interfaces: hosts `eth0`; routers `wan` (outside) and
//! `lan` (inside). Nothing touches the machine's own namespace.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use anyhow::{anyhow, bail, Context, Result};

use crate::netns::Netns;

/// How a NAT router maps and filters, in RFC 4787 terms. Both use Linux conntrack, so inbound
/// packets are only let through for a mapping the inside host opened (address-and-port-dependent
/// filtering), as most home routers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Endpoint-independent mapping: one inside socket keeps one public port for every
    /// destination (nftables `masquerade`, which keeps the source port when it is free). ICE
    /// hole punching with STUN works across two of these.
    EndpointIndependent,
    /// Address-and-port-dependent mapping: every new destination gets a new random public port
    /// (`masquerade fully-random`). Two of these defeat hole punching without a relay.
    Symmetric,
}

#[derive(Debug)]
struct LanSpec {
    name: String,
    prefix: [u8; 3],
    gateway: Option<String>,
}

#[derive(Debug)]
enum NodeSpec {
    Host { name: String, lan: String },
    Nat { name: String, kind: NatKind, outside: String, inside: String },
}

/// Declares the topology; [`TopologyBuilder::build`] creates it.
#[derive(Debug, Default)]
pub struct TopologyBuilder {
    lans: Vec<LanSpec>,
    nodes: Vec<NodeSpec>,
    errors: Vec<String>,
}

impl TopologyBuilder {
    /// A LAN (switch) with a /24 subnet such as `"198.51.100.0/24"`.
    pub fn lan(mut self, name: &str, subnet: &str) -> Self {
        match parse_24(subnet) {
            Ok(prefix) => self.lans.push(LanSpec { name: name.into(), prefix, gateway: None }),
            Err(e) => self.errors.push(format!("lan {name}: {e}")),
        }
        self
    }

    /// A host attached to `lan` (declared before).
    pub fn host(mut self, name: &str, lan: &str) -> Self {
        self.nodes.push(NodeSpec::Host { name: name.into(), lan: lan.into() });
        self
    }

    /// A NAT router with its `wan` on `outside` (declared before) that creates the LAN `inside`
    /// with `inside_subnet` and is its gateway (`.1`). Routers can be nested (carrier-grade NAT).
    pub fn nat(
        mut self,
        name: &str,
        kind: NatKind,
        outside: &str,
        inside: &str,
        inside_subnet: &str,
    ) -> Self {
        match parse_24(inside_subnet) {
            Ok(prefix) => {
                self.lans.push(LanSpec { name: inside.into(), prefix, gateway: Some(name.into()) });
                self.nodes.push(NodeSpec::Nat {
                    name: name.into(),
                    kind,
                    outside: outside.into(),
                    inside: inside.into(),
                });
            }
            Err(e) => self.errors.push(format!("nat {name}: {e}")),
        }
        self
    }

    pub fn build(self) -> Result<Topology> {
        if !self.errors.is_empty() {
            bail!("topology: {}", self.errors.join("; "));
        }
        let mut names = std::collections::HashSet::new();
        for n in self.lans.iter().map(|l| &l.name).chain(self.nodes.iter().map(node_name)) {
            check_name(n)?;
            anyhow::ensure!(names.insert(n.clone()), "topology: name {n:?} used twice");
        }

        let mut lans: HashMap<String, Lan> = HashMap::new();
        let mut lan_order = Vec::new();
        let mut nodes: Vec<Node> = Vec::new();
        // LANs behind a router are created when the router is, so declaration order holds.
        for spec in self.lans.iter().filter(|l| l.gateway.is_none()) {
            let lan = Lan::create(spec)?;
            lan_order.push(spec.name.clone());
            lans.insert(spec.name.clone(), lan);
        }
        for spec in &self.nodes {
            match spec {
                NodeSpec::Host { name, lan } => {
                    let lan = lans
                        .get_mut(lan)
                        .ok_or_else(|| anyhow!("host {name}: no LAN {lan:?} declared before it"))?;
                    let mut ns = Netns::bare(Some(name))?;
                    let addr = lan.attach(&ns, "eth0", None)?;
                    default_route(&ns, "eth0", lan.gateway)?;
                    ns.set_addr(addr);
                    nodes.push(Node { name: name.clone(), ns, kind: None, inside_addr: None });
                }
                NodeSpec::Nat { name, kind, outside, inside } => {
                    let lan_spec = self
                        .lans
                        .iter()
                        .find(|l| &l.name == inside)
                        .ok_or_else(|| anyhow!("nat {name}: inside LAN missing"))?;
                    let mut ns = Netns::bare(Some(name))?;
                    let out_lan = lans
                        .get_mut(outside)
                        .ok_or_else(|| anyhow!("nat {name}: no LAN {outside:?} declared before it"))?;
                    let wan_addr = out_lan.attach(&ns, "wan", None)?;
                    default_route(&ns, "wan", out_lan.gateway)?;
                    let mut in_lan = Lan::create(lan_spec)?;
                    let gw = Ipv4Addr::new(lan_spec.prefix[0], lan_spec.prefix[1], lan_spec.prefix[2], 1);
                    in_lan.attach(&ns, "lan", Some(gw))?;
                    in_lan.gateway = Some(gw);
                    configure_nat(&ns, *kind).with_context(|| format!("nat {name}"))?;
                    ns.set_addr(wan_addr);
                    lan_order.push(inside.clone());
                    lans.insert(inside.clone(), in_lan);
                    nodes.push(Node { name: name.clone(), ns, kind: Some(*kind), inside_addr: Some(gw) });
                }
            }
        }
        let lans = lan_order.into_iter().filter_map(|n| lans.remove(&n).map(|l| (n, l))).collect();
        Ok(Topology { nodes, lans })
    }
}

/// A built topology. Dropping it deletes every namespace (processes in them are killed first).
#[derive(Debug)]
pub struct Topology {
    // Field order is drop order: hosts and routers before the LANs they hang on.
    nodes: Vec<Node>,
    lans: Vec<(String, Lan)>,
}

#[derive(Debug)]
struct Node {
    name: String,
    ns: Netns,
    kind: Option<NatKind>,
    inside_addr: Option<Ipv4Addr>,
}

impl Topology {
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::default()
    }

    /// The namespace of a host or router. Panics on a name the test never declared (a bug in
    /// the test, not bad input).
    pub fn ns(&self, name: &str) -> &Netns {
        &self.node(name).ns
    }

    /// A host's address on its LAN; a NAT router's outside (public) address.
    pub fn addr(&self, name: &str) -> Ipv4Addr {
        self.node(name).ns.addr()
    }

    /// A NAT router's address on its inside LAN (the hosts' gateway).
    pub fn inside_addr(&self, name: &str) -> Option<Ipv4Addr> {
        self.node(name).inside_addr
    }

    pub fn nat_kind(&self, name: &str) -> Option<NatKind> {
        self.node(name).kind
    }

    /// Namespace names, for logs: `(node, namespace)`.
    pub fn describe(&self) -> Vec<(String, String)> {
        let nodes = self.nodes.iter().map(|n| (n.name.clone(), n.ns.name().to_string()));
        let lans = self.lans.iter().map(|(n, l)| (format!("lan:{n}"), l.ns.name().to_string()));
        nodes.chain(lans).collect()
    }

    fn node(&self, name: &str) -> &Node {
        match self.nodes.iter().find(|n| n.name == name) {
            Some(n) => n,
            None => panic!("topology has no host or router named {name:?}"),
        }
    }
}

#[derive(Debug)]
struct Lan {
    ns: Netns,
    prefix: [u8; 3],
    next_host: u8,
    next_port: u32,
    gateway: Option<Ipv4Addr>,
}

impl Lan {
    fn create(spec: &LanSpec) -> Result<Lan> {
        let ns = Netns::bare(Some(&format!("lan-{}", spec.name)))?;
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        Ok(Lan { ns, prefix: spec.prefix, next_host: 10, next_port: 0, gateway: None })
    }

    /// Connects `node` to this LAN's bridge with a veth whose node end is `ifname`, addressed
    /// `addr` or the next free host address. Returns the address.
    fn attach(&mut self, node: &Netns, ifname: &str, addr: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
        let addr = match addr {
            Some(a) => a,
            None => {
                anyhow::ensure!(self.next_host < 250, "LAN full");
                let a = Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], self.next_host);
                self.next_host += 1;
                a
            }
        };
        let port = format!("p{}", self.next_port);
        self.next_port += 1;
        node.ip(&["link", "add", ifname, "type", "veth", "peer", "name", &port, "netns", self.ns.name()])?;
        self.ns.ip(&["link", "set", &port, "master", "br0"])?;
        self.ns.ip(&["link", "set", &port, "up"])?;
        node.ip(&["addr", "add", &format!("{addr}/24"), "dev", ifname])?;
        node.ip(&["link", "set", ifname, "up"])?;
        Ok(addr)
    }
}

fn default_route(ns: &Netns, ifname: &str, gateway: Option<Ipv4Addr>) -> Result<()> {
    match gateway {
        Some(gw) => ns.ip(&["route", "add", "default", "via", &gw.to_string(), "dev", ifname])?,
        None => ns.ip(&["route", "add", "default", "dev", ifname])?,
    };
    Ok(())
}

fn configure_nat(ns: &Netns, kind: NatKind) -> Result<()> {
    ns.run("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"])?;
    let masquerade = match kind {
        NatKind::EndpointIndependent => "masquerade",
        NatKind::Symmetric => "masquerade fully-random",
    };
    // `filter_in` drops unsolicited packets to the router itself before conntrack confirms
    // them, as home routers do. Without it, a hole-punching packet that arrives before the
    // inside host's own first packet leaves a confirmed inbound entry whose reply tuple then
    // clashes with the host's outbound mapping, and masquerade picks a new port: the NAT
    // would behave as endpoint-dependent exactly when two peers punch at once.
    let rules = format!(
        "table ip shoal_nat {{\n\
         \tchain nat_out {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\toifname \"wan\" {masquerade}\n\
         \t}}\n\
         \tchain filter_in {{\n\
         \t\ttype filter hook input priority filter; policy accept;\n\
         \t\tiifname \"wan\" ct state new drop\n\
         \t}}\n\
         \tchain filter_fwd {{\n\
         \t\ttype filter hook forward priority filter; policy drop;\n\
         \t\tct state established,related accept\n\
         \t\tiifname \"lan\" oifname \"wan\" accept\n\
         \t}}\n\
         }}\n"
    );
    let rules_file = std::env::temp_dir().join(format!("{}.nft", ns.name()));
    std::fs::write(&rules_file, rules).context("writing nft rules")?;
    let path = rules_file.to_string_lossy().into_owned();
    let result = ns.run("nft", &["-f", &path]);
    let _ = std::fs::remove_file(&rules_file);
    result.context("loading nftables rules (is nftables installed? scripts/install-deps.sh)")?;
    Ok(())
}

fn node_name(n: &NodeSpec) -> &String {
    match n {
        NodeSpec::Host { name, .. } | NodeSpec::Nat { name, .. } => name,
    }
}

fn check_name(n: &str) -> Result<()> {
    anyhow::ensure!(
        !n.is_empty()
            && n.len() <= 16
            && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "topology name {n:?}: use 1-16 of [a-z0-9-]"
    );
    Ok(())
}

fn parse_24(subnet: &str) -> Result<[u8; 3]> {
    let (addr, len) = subnet.split_once('/').ok_or_else(|| anyhow!("{subnet:?}: expected a.b.c.0/24"))?;
    anyhow::ensure!(len == "24", "{subnet:?}: only /24 subnets are supported");
    let ip: Ipv4Addr = addr.parse().with_context(|| format!("{subnet:?}: bad address"))?;
    let o = ip.octets();
    anyhow::ensure!(o[3] == 0, "{subnet:?}: host part must be 0");
    anyhow::ensure!(!ip.is_loopback() && !ip.is_unspecified(), "{subnet:?}: not a LAN subnet");
    Ok([o[0], o[1], o[2]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_reject() {
        assert_eq!(parse_24("198.51.100.0/24").ok(), Some([198, 51, 100]));
        assert!(parse_24("198.51.100.0/16").is_err());
        assert!(parse_24("198.51.100.7/24").is_err());
        assert!(parse_24("127.0.0.0/24").is_err());
        assert!(parse_24("nonsense").is_err());
    }

    #[test]
    fn builder_reports_bad_declarations_before_touching_the_system() {
        let err = Topology::builder().lan("x", "10.0.0.0/8").build().map(|_| ()).unwrap_err();
        assert!(format!("{err}").contains("only /24"), "{err}");
        let err = Topology::builder().lan("Bad_Name", "10.0.0.0/24").build().map(|_| ()).unwrap_err();
        assert!(format!("{err}").contains("[a-z0-9-]"), "{err}");
        let err = Topology::builder()
            .lan("a", "10.0.0.0/24")
            .lan("a", "10.0.1.0/24")
            .build()
            .map(|_| ())
            .unwrap_err();
        assert!(format!("{err}").contains("used twice"), "{err}");
    }
}
