//! Values of packet-header fields that rules match: DSCP code points
//! ("EF"), port ranges ("50000-50019") and IP protocols ("udp").

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A DSCP code point (0..=63) in the IP header's traffic-class byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dscp(u8);

/// Names of DSCP code points (RFC 2474, 2597, 3246, 5865, 8622).
const DSCP_NAMES: &[(&str, u8)] = &[
    ("DF", 0),
    ("BE", 0),
    ("CS0", 0),
    ("LE", 1),
    ("CS1", 8),
    ("AF11", 10),
    ("AF12", 12),
    ("AF13", 14),
    ("CS2", 16),
    ("AF21", 18),
    ("AF22", 20),
    ("AF23", 22),
    ("CS3", 24),
    ("AF31", 26),
    ("AF32", 28),
    ("AF33", 30),
    ("CS4", 32),
    ("AF41", 34),
    ("AF42", 36),
    ("AF43", 38),
    ("CS5", 40),
    ("VA", 44),
    ("EF", 46),
    ("CS6", 48),
    ("CS7", 56),
];

impl Dscp {
    /// Expedited Forwarding (46): telephony.
    pub const EF: Dscp = Dscp(46);
    /// Default forwarding (0).
    pub const DF: Dscp = Dscp(0);

    /// The code point `value`, if it fits in six bits.
    pub const fn new(value: u8) -> Option<Self> {
        if value < 64 { Some(Dscp(value)) } else { None }
    }
    /// The six-bit value.
    pub const fn value(self) -> u8 {
        self.0
    }
    /// The standard name of this code point, if it has one.
    pub fn name(self) -> Option<&'static str> {
        // "DF" and "BE" alias 0; prefer "DF" (first in the table).
        DSCP_NAMES
            .iter()
            .find(|(_, v)| *v == self.0)
            .map(|(n, _)| *n)
    }
}

impl FromStr for Dscp {
    type Err = String;
    /// "EF", "af41", "CS1", "LE" or a number 0..=63.
    fn from_str(text: &str) -> Result<Self, String> {
        let s = text.trim();
        if let Ok(n) = s.parse::<u32>() {
            return u8::try_from(n)
                .ok()
                .and_then(Dscp::new)
                .ok_or_else(|| format!("DSCP {n} is out of range (0-63)"));
        }
        DSCP_NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, v)| Dscp(*v))
            .ok_or_else(|| {
                format!("unknown DSCP \"{text}\" (use EF, AF11..AF43, CS0..CS7, LE, DF, VA or a number 0-63)")
            })
    }
}

impl fmt::Display for Dscp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.0),
        }
    }
}

impl Serialize for Dscp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An inclusive range of TCP/UDP ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port in the range.
    pub first: u16,
    /// Last port in the range (>= `first`).
    pub last: u16,
}

impl PortRange {
    /// True when `port` lies in the range.
    #[inline]
    pub fn contains(self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

impl PortRange {
    /// An inclusive range of another 16-bit quantity written like ports
    /// ("148", "4-516"; payload lengths): errors name it `what` and show
    /// `example`.
    pub fn parse_named(text: &str, what: &str, example: &str) -> Result<Self, String> {
        let one = |t: &str| -> Result<u16, String> {
            let n: u64 = t.trim().parse().map_err(|_| {
                format!("\"{text}\" is not a {what} or {what} range (write {example})")
            })?;
            u16::try_from(n).map_err(|_| format!("{what} {n} in \"{text}\" is above 65535"))
        };
        let s = text.trim();
        let (a, b) = s.split_once(['-', ':']).unwrap_or((s, s));
        let (first, last) = (one(a)?, one(b)?);
        if first > last {
            return Err(format!(
                "{what} range \"{text}\" is reversed: its first {what} is above its last \
                 (write {last}-{first})"
            ));
        }
        Ok(PortRange { first, last })
    }
}

impl FromStr for PortRange {
    type Err = String;
    /// "443" or "50000-50019" (also "50000:50019").
    fn from_str(text: &str) -> Result<Self, String> {
        PortRange::parse_named(text, "port", "443 or \"50000-50019\"")
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An IP protocol number (IPv4 protocol / IPv6 next header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Protocol(pub u8);

const PROTOCOL_NAMES: &[(&str, u8)] = &[
    ("icmp", 1),
    ("igmp", 2),
    ("tcp", 6),
    ("udp", 17),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("icmpv6", 58),
    ("icmp6", 58),
    ("ipv6-icmp", 58),
    ("sctp", 132),
];

impl Protocol {
    /// TCP (6).
    pub const TCP: Protocol = Protocol(6);
    /// UDP (17).
    pub const UDP: Protocol = Protocol(17);
    /// ICMP (1).
    pub const ICMP: Protocol = Protocol(1);
    /// ICMPv6 (58).
    pub const ICMPV6: Protocol = Protocol(58);
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let s = text.trim();
        if let Ok(n) = s.parse::<u32>() {
            return u8::try_from(n)
                .map(Protocol)
                .map_err(|_| format!("protocol number {n} is above 255"));
        }
        PROTOCOL_NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, v)| Protocol(*v))
            .ok_or_else(|| format!("unknown protocol \"{text}\" (use tcp, udp, icmp, icmpv6, gre, esp, ah, sctp or a number)"))
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match PROTOCOL_NAMES.iter().find(|(_, v)| *v == self.0) {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
