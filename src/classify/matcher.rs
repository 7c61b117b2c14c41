//! Conditions compiled for fast evaluation against a flow: CIDRs become
//! (network, mask) pairs over 128-bit addresses (IPv4-mapped), DSCP lists
//! become a 64-bit set, app names become catalog indexes.

use ipnet::IpNet;

use crate::config::{Direction, HostPattern, Match, PortRange};

/// A network over IPv4-mapped 128-bit addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: u128,
    mask: u128,
}

impl Cidr {
    /// The network `n`, IPv4 ones mapped into ::ffff:0:0/96.
    pub fn new(n: &IpNet) -> Self {
        let (addr, prefix) = match n {
            IpNet::V4(v4) => (
                u128::from(v4.network().to_ipv6_mapped()),
                96 + u32::from(v4.prefix_len()),
            ),
            IpNet::V6(v6) => (u128::from(v6.network()), u32::from(v6.prefix_len())),
        };
        let mask = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - prefix.min(128))
        };
        Cidr {
            net: addr & mask,
            mask,
        }
    }

    /// True when `addr` (16 bytes, IPv4-mapped) is inside.
    #[inline]
    pub fn contains(&self, addr: u128) -> bool {
        addr & self.mask == self.net
    }
}

/// Index of an app in the classifier's catalog.
pub type AppId = u16;

/// What a flow looks like to a condition, at the time it is evaluated.
#[derive(Debug, Clone, Copy)]
pub struct FlowFacts<'a> {
    /// IP protocol.
    pub protocol: u8,
    /// Address of the side that opened the flow.
    pub src: u128,
    /// Its port (0 without ports).
    pub src_port: u16,
    /// Address of the side that answered.
    pub dst: u128,
    /// Its port.
    pub dst_port: u16,
    /// DSCP of the packet being classified.
    pub dscp: u8,
    /// Outer VLAN id of the packet.
    pub vlan: Option<u16>,
    /// Direction of the packet (or of the verdict being computed).
    pub direction: Direction,
    /// Host name learned so far.
    pub host: Option<&'a str>,
    /// App recognised so far.
    pub app: Option<AppId>,
    /// True when nothing more will be learned about the flow (its host, its
    /// app): conditions on them are then false rather than "not yet".
    pub settled: bool,
}

/// The answer of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Matches.
    Yes,
    /// Does not match.
    No,
    /// Depends on something not known yet (host name, app).
    NotYet,
}

/// Compiled [`Match`].
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    protocol: Option<u8>,
    ports: Vec<PortRange>,
    src_ports: Vec<PortRange>,
    dst_ports: Vec<PortRange>,
    cidrs: Vec<Cidr>,
    src_cidrs: Vec<Cidr>,
    dst_cidrs: Vec<Cidr>,
    /// Bit n set: DSCP n matches; 0 means any.
    dscp: u64,
    vlan: Vec<u16>,
    hosts: Vec<HostPattern>,
    apps: Vec<AppId>,
    direction: Option<Direction>,
    /// Whether the match has CIDR conditions (a signature then counts as an
    /// "ip-range" match rather than a "port" match).
    pub has_cidrs: bool,
}

fn any_port(ranges: &[PortRange], port: u16) -> bool {
    ranges.iter().any(|r| r.contains(port))
}

fn any_cidr(cidrs: &[Cidr], addr: u128) -> bool {
    cidrs.iter().any(|c| c.contains(addr))
}

impl Matcher {
    /// Compiles `m`; `app_id` resolves app names (unknown ones never match).
    pub fn new(m: &Match, app_id: impl Fn(&str) -> Option<AppId>) -> Self {
        let cidrs = |v: &[IpNet]| v.iter().map(Cidr::new).collect::<Vec<_>>();
        Matcher {
            protocol: m.protocol.map(|p| p.0),
            ports: m.ports.clone(),
            src_ports: m.src_ports.clone(),
            dst_ports: m.dst_ports.clone(),
            cidrs: cidrs(&m.cidrs),
            src_cidrs: cidrs(&m.src_cidrs),
            dst_cidrs: cidrs(&m.dst_cidrs),
            dscp: m
                .dscp
                .iter()
                .fold(0u64, |acc, d| acc | (1u64 << (d.value() & 63))),
            vlan: m.vlan.clone(),
            hosts: m.hosts.clone(),
            apps: m
                .apps
                .iter()
                .map(|a| app_id(a).unwrap_or(AppId::MAX))
                .collect(),
            direction: m.direction,
            has_cidrs: !(m.cidrs.is_empty() && m.src_cidrs.is_empty() && m.dst_cidrs.is_empty()),
        }
    }

    /// Every port range of its port conditions (`ports`, `src_ports`,
    /// `dst_ports`); empty when it has none.
    pub fn port_ranges(&self) -> Vec<PortRange> {
        [&self.ports, &self.src_ports, &self.dst_ports]
            .into_iter()
            .flatten()
            .copied()
            .collect()
    }

    /// True when the conditions need a host name or an app.
    pub fn needs_identity(&self) -> bool {
        !self.hosts.is_empty() || !self.apps.is_empty()
    }

    /// True when some condition depends on the packet (DSCP), so the answer
    /// may differ between packets of one flow.
    pub fn per_packet(&self) -> bool {
        self.dscp != 0
    }

    /// Evaluates the conditions on `f`. Cheap conditions first.
    pub fn eval(&self, f: &FlowFacts<'_>) -> Answer {
        if self.protocol.is_some_and(|p| p != f.protocol)
            || self.direction.is_some_and(|d| d != f.direction)
            || (self.dscp != 0 && self.dscp & (1u64 << (f.dscp & 63)) == 0)
            || (!self.vlan.is_empty() && !f.vlan.is_some_and(|v| self.vlan.contains(&v)))
            || (!self.ports.is_empty()
                && !any_port(&self.ports, f.src_port)
                && !any_port(&self.ports, f.dst_port))
            || (!self.src_ports.is_empty() && !any_port(&self.src_ports, f.src_port))
            || (!self.dst_ports.is_empty() && !any_port(&self.dst_ports, f.dst_port))
            || (!self.cidrs.is_empty()
                && !any_cidr(&self.cidrs, f.src)
                && !any_cidr(&self.cidrs, f.dst))
            || (!self.src_cidrs.is_empty() && !any_cidr(&self.src_cidrs, f.src))
            || (!self.dst_cidrs.is_empty() && !any_cidr(&self.dst_cidrs, f.dst))
        {
            return Answer::No;
        }
        let mut answer = Answer::Yes;
        if !self.hosts.is_empty() {
            match f.host {
                Some(h) if self.hosts.iter().any(|p| p.matches(h)) => {}
                None if !f.settled => answer = Answer::NotYet,
                _ => return Answer::No,
            }
        }
        if !self.apps.is_empty() {
            match f.app {
                Some(a) if self.apps.contains(&a) => {}
                None if !f.settled => answer = Answer::NotYet,
                _ => return Answer::No,
            }
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Dscp, Protocol};
    use std::net::Ipv4Addr;

    fn v4(a: [u8; 4]) -> u128 {
        u128::from(Ipv4Addr::from(a).to_ipv6_mapped())
    }

    fn facts() -> FlowFacts<'static> {
        FlowFacts {
            protocol: 17,
            src: v4([192, 168, 1, 10]),
            src_port: 50010,
            dst: v4([52, 113, 1, 1]),
            dst_port: 3478,
            dscp: 46,
            vlan: Some(20),
            direction: Direction::Upload,
            host: None,
            app: None,
            settled: false,
        }
    }

    #[test]
    fn cidr_v4_and_v6() {
        let c = Cidr::new(&"52.112.0.0/14".parse().unwrap());
        assert!(c.contains(v4([52, 113, 1, 1])));
        assert!(!c.contains(v4([52, 116, 0, 0])));
        let all = Cidr::new(&"0.0.0.0/0".parse().unwrap());
        assert!(all.contains(v4([1, 2, 3, 4])));
        assert!(!all.contains(u128::from(
            "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap()
        )));
        let v6 = Cidr::new(&"2001:db8::/32".parse().unwrap());
        assert!(v6.contains(u128::from(
            "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap()
        )));
        let any6 = Cidr::new(&"::/0".parse().unwrap());
        assert!(any6.contains(v4([1, 2, 3, 4])));
    }

    #[test]
    fn conditions() {
        let mut m = Match {
            protocol: Some(Protocol::UDP),
            ports: vec!["3478-3481".parse().unwrap()],
            ..Match::default()
        };
        m.dst_cidrs = vec!["52.112.0.0/14".parse().unwrap()];
        m.dscp = vec![Dscp::EF];
        m.vlan = vec![20];
        m.direction = Some(Direction::Upload);
        let matcher = Matcher::new(&m, |_| None);
        assert_eq!(matcher.eval(&facts()), Answer::Yes);
        assert_eq!(
            matcher.eval(&FlowFacts {
                direction: Direction::Download,
                ..facts()
            }),
            Answer::No
        );
        assert_eq!(matcher.eval(&FlowFacts { dscp: 0, ..facts() }), Answer::No);
        assert_eq!(
            matcher.eval(&FlowFacts {
                vlan: None,
                ..facts()
            }),
            Answer::No
        );
        assert_eq!(
            matcher.eval(&FlowFacts {
                protocol: 6,
                ..facts()
            }),
            Answer::No
        );
        assert_eq!(
            matcher.eval(&FlowFacts {
                dst_port: 443,
                ..facts()
            }),
            Answer::No
        );
        // src/dst are the initiator's and responder's: swapped, dst_cidrs fails.
        let f = facts();
        assert_eq!(
            matcher.eval(&FlowFacts {
                src: f.dst,
                dst: f.src,
                ..f
            }),
            Answer::No
        );
        assert!(matcher.has_cidrs);
    }

    #[test]
    fn hosts_and_apps_wait_until_settled() {
        let m = Match {
            hosts: vec!["*.sharepoint.com".parse().unwrap()],
            ..Match::default()
        };
        let matcher = Matcher::new(&m, |_| None);
        assert_eq!(matcher.eval(&facts()), Answer::NotYet);
        assert_eq!(
            matcher.eval(&FlowFacts {
                settled: true,
                ..facts()
            }),
            Answer::No
        );
        assert_eq!(
            matcher.eval(&FlowFacts {
                host: Some("contoso.sharepoint.com"),
                ..facts()
            }),
            Answer::Yes
        );
        assert_eq!(
            matcher.eval(&FlowFacts {
                host: Some("example.com"),
                ..facts()
            }),
            Answer::No
        );

        let m = Match {
            apps: vec!["zoom".into()],
            ..Match::default()
        };
        let matcher = Matcher::new(&m, |name| (name == "zoom").then_some(7));
        assert_eq!(matcher.eval(&facts()), Answer::NotYet);
        assert_eq!(
            matcher.eval(&FlowFacts {
                app: Some(7),
                ..facts()
            }),
            Answer::Yes
        );
        assert_eq!(
            matcher.eval(&FlowFacts {
                app: Some(8),
                ..facts()
            }),
            Answer::No
        );
    }
}
