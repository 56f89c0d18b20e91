//! IP prefix → locality label (ISP / region), longest prefix first.
//!
//! One hash map per distinct prefix length, tried from the longest: a lookup costs one masked
//! hash probe per distinct length (at most 33 for IPv4, 129 for IPv6), whatever the table size.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use shoal_proto::tracker::valid_locality;

use crate::config::LocalityRule;

#[derive(Clone, Debug, Default)]
pub struct LocalityTable {
    v4: Vec<(u8, HashMap<u32, Arc<str>>)>,
    v6: Vec<(u8, HashMap<u128, Arc<str>>)>,
    unknown: Arc<str>,
}

fn mask4(addr: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        addr & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask6(addr: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        addr & (u128::MAX << (128 - u32::from(len)))
    }
}

/// IPv4-mapped IPv6 addresses are IPv4 (dual-stack listeners report them that way).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl LocalityTable {
    pub fn new(rules: &[LocalityRule]) -> Result<Self, String> {
        let mut t = LocalityTable { unknown: Arc::from(""), ..Default::default() };
        let mut labels: HashMap<&str, Arc<str>> = HashMap::new();
        for r in rules {
            if !valid_locality(&r.label) {
                return Err(format!("locality label {:?}: expected [a-z0-9_.:-]{{1,64}}", r.label));
            }
            let label = labels.entry(&r.label).or_insert_with(|| Arc::from(r.label.as_str())).clone();
            let (addr, len) = match r.cidr.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (r.cidr.as_str(), None),
            };
            let ip: IpAddr = addr.parse().map_err(|_| format!("locality cidr {:?}: bad address", r.cidr))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len: u8 =
                match len {
                    Some(l) => l.parse().ok().filter(|&l| l <= max).ok_or_else(|| {
                        format!("locality cidr {:?}: prefix length must be 0..={max}", r.cidr)
                    })?,
                    None => max,
                };
            match ip {
                IpAddr::V4(v4) => {
                    let key = mask4(u32::from(v4), len);
                    insert(&mut t.v4, len, key, label, &r.cidr)?;
                }
                IpAddr::V6(v6) => {
                    let key = mask6(u128::from(v6), len);
                    insert(&mut t.v6, len, key, label, &r.cidr)?;
                }
            }
        }
        t.v4.sort_by_key(|l| std::cmp::Reverse(l.0));
        t.v6.sort_by_key(|l| std::cmp::Reverse(l.0));
        Ok(t)
    }

    /// The label of the longest matching prefix, or "" when none matches.
    pub fn lookup(&self, ip: IpAddr) -> Arc<str> {
        let found = match canonical(ip) {
            IpAddr::V4(v4) => {
                let a = u32::from(v4);
                self.v4.iter().find_map(|(len, m)| m.get(&mask4(a, *len)))
            }
            IpAddr::V6(v6) => {
                let a = u128::from(v6);
                self.v6.iter().find_map(|(len, m)| m.get(&mask6(a, *len)))
            }
        };
        found.unwrap_or(&self.unknown).clone()
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

fn insert<K: std::hash::Hash + Eq>(
    levels: &mut Vec<(u8, HashMap<K, Arc<str>>)>,
    len: u8,
    key: K,
    label: Arc<str>,
    cidr: &str,
) -> Result<(), String> {
    let idx = match levels.iter().position(|(l, _)| *l == len) {
        Some(i) => i,
        None => {
            levels.push((len, HashMap::new()));
            levels.len() - 1
        }
    };
    if levels[idx].1.insert(key, label).is_some() {
        return Err(format!("locality cidr {cidr:?} appears twice"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(cidr: &str, label: &str) -> LocalityRule {
        LocalityRule { cidr: cidr.into(), label: label.into() }
    }

    #[test]
    fn longest_prefix_wins() {
        let t = LocalityTable::new(&[
            rule("10.0.0.0/8", "isp-a"),
            rule("10.1.0.0/16", "isp-a:lab"),
            rule("10.1.2.3", "host"),
            rule("2001:db8::/32", "isp-v6"),
        ])
        .expect("valid table");
        let l = |s: &str| t.lookup(s.parse().expect("test address")).to_string();
        assert_eq!(l("10.9.9.9"), "isp-a");
        assert_eq!(l("10.1.9.9"), "isp-a:lab");
        assert_eq!(l("10.1.2.3"), "host");
        assert_eq!(l("11.0.0.1"), "");
        assert_eq!(l("2001:db8:1::5"), "isp-v6");
        assert_eq!(l("::ffff:10.1.2.3"), "host", "mapped IPv4 is IPv4");
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(LocalityTable::new(&[rule("10.0.0.0/33", "a")]).is_err());
        assert!(LocalityTable::new(&[rule("nonsense/8", "a")]).is_err());
        assert!(LocalityTable::new(&[rule("10.0.0.0/8", "Bad Label")]).is_err());
        assert!(LocalityTable::new(&[rule("10.0.0.0/8", "a"), rule("10.0.0.1/8", "b")]).is_err());
        let all = LocalityTable::new(&[rule("0.0.0.0/0", "any")]).expect("valid");
        assert_eq!(&*all.lookup("1.2.3.4".parse().expect("addr")), "any");
    }
}
