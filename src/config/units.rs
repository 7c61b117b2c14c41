//! Value types admins write in the config file, with their parsers and
//! canonical spellings: rates ("20 Mbit"), shares of the link ("30%"), DSCP
//! code points ("EF"), port ranges ("50000-50019"), IP protocols ("udp"),
//! host-name patterns ("*.sharepoint.com"), durations ("300s") and
//! amounts of memory ("32 MiB").
//!
//! Every parser returns a message meant for an admin; the caller adds the
//! file and key path.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// A data rate in bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(u64);

/// The highest rate qosd accepts (1 Tbit/s): far above any branch-office
/// link, low enough that byte/nanosecond arithmetic in the shaper never
/// overflows.
pub const MAX_RATE_BPS: u64 = 1_000_000_000_000;

impl Rate {
    /// A rate of `bps` bits per second.
    pub const fn from_bps(bps: u64) -> Self {
        Rate(bps)
    }
    /// Bits per second.
    pub const fn bps(self) -> u64 {
        self.0
    }
    /// Bytes per second (rounded down).
    pub const fn bytes_per_sec(self) -> u64 {
        self.0 / 8
    }
}

/// Units a rate may be written in, with their multiplier in bits per second.
/// Lower-case, without the optional "/s" suffix.
const RATE_UNITS: &[(&str, u64)] = &[
    ("bit", 1),
    ("b", 1),
    ("kbit", 1_000),
    ("kb", 1_000),
    ("k", 1_000),
    ("mbit", 1_000_000),
    ("mb", 1_000_000),
    ("m", 1_000_000),
    ("gbit", 1_000_000_000),
    ("gb", 1_000_000_000),
    ("g", 1_000_000_000),
    ("tbit", 1_000_000_000_000),
    ("kibit", 1 << 10),
    ("mibit", 1 << 20),
    ("gibit", 1 << 30),
];

/// Splits "12.5 Mbit" into ("12.5", "Mbit").
fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    (s[..end].trim(), s[end..].trim())
}

/// Multiplies a decimal number written as text by an integer scale, exactly.
/// Returns `None` on overflow; the fraction is truncated below one unit.
fn scale_decimal(number: &str, scale: u64) -> Result<u128, String> {
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err("missing number".into());
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("\"{number}\" is not a number"));
    }
    if int_part.len() > 30 || frac_part.len() > 18 {
        return Err(format!("\"{number}\" is too large or too precise"));
    }
    let int: u128 = if int_part.is_empty() {
        0
    } else {
        int_part
            .parse()
            .map_err(|_| "number too large".to_string())?
    };
    let mut value = int
        .checked_mul(u128::from(scale))
        .ok_or_else(|| "number too large".to_string())?;
    if !frac_part.is_empty() {
        let frac: u128 = frac_part
            .parse()
            .map_err(|_| "number too large".to_string())?;
        let denom = 10u128.pow(frac_part.len() as u32);
        value = value
            .checked_add(frac * u128::from(scale) / denom)
            .ok_or_else(|| "number too large".to_string())?;
    }
    Ok(value)
}

impl FromStr for Rate {
    type Err = String;

    /// Parses the spellings admins use: "20 Mbit", "20mbit", "1.5 Gbit/s",
    /// "512 kbit", "100M". Units are SI (k = 1000) unless written kibit/mibit/gibit.
    /// "Mbps"-style units are refused: `tc` reads them as *bytes* per second,
    /// ISPs as bits, so they are ambiguous.
    fn from_str(text: &str) -> Result<Self, String> {
        let s = text.trim();
        if s.is_empty() {
            return Err("empty rate".into());
        }
        let (number, unit_text) = split_number(s);
        if number.starts_with('-') {
            return Err(format!(
                "rate \"{text}\" is negative; rates must be above zero"
            ));
        }
        let number = number.strip_prefix('+').unwrap_or(number);
        if number.is_empty() {
            return Err(format!("\"{text}\" does not start with a number"));
        }
        let lower = unit_text.to_ascii_lowercase();
        let unit = lower
            .strip_suffix("/s")
            .or_else(|| lower.strip_suffix("ps").filter(|u| u.ends_with("bit")))
            .unwrap_or(&lower)
            .trim();
        if unit.is_empty() {
            return Err(format!(
                "rate \"{text}\" has no unit; write e.g. \"{number} Mbit\" or \"{number} kbit\""
            ));
        }
        let bytes_unit = unit_text.trim_end_matches("/s").ends_with('B');
        if bytes_unit || unit.ends_with("bps") || unit.ends_with("byte") || unit.ends_with("bytes")
        {
            return Err(format!(
                "unit \"{unit_text}\" in \"{text}\" is not accepted: byte units and \"bps\" spellings mean bytes to tc and bits to ISPs; write the rate in bits, e.g. \"{number} Mbit\""
            ));
        }
        let scale = RATE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| {
                format!(
                    "unknown unit \"{unit_text}\" in \"{text}\" (use bit, kbit, Mbit, Gbit, optionally with /s)"
                )
            })?;
        let bps = scale_decimal(number, scale).map_err(|e| format!("rate \"{text}\": {e}"))?;
        if bps == 0 {
            return Err(format!("rate \"{text}\" is zero; rates must be above zero"));
        }
        if bps > u128::from(MAX_RATE_BPS) {
            return Err(format!("rate \"{text}\" is above the maximum of 1 Tbit"));
        }
        Ok(Rate(bps as u64))
    }
}

impl fmt::Display for Rate {
    /// The canonical spelling: the largest unit that keeps at most three
    /// decimals exact ("20 Mbit", "1.5 Gbit", "512 kbit", "1234 bit").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, scale) in [
            ("Tbit", 1_000_000_000_000u64),
            ("Gbit", 1_000_000_000),
            ("Mbit", 1_000_000),
            ("kbit", 1_000),
        ] {
            if self.0 >= scale && (u128::from(self.0) * 1000) % u128::from(scale) == 0 {
                let whole = self.0 / scale;
                let frac = (u128::from(self.0 % scale) * 1000 / u128::from(scale)) as u64;
                return if frac == 0 {
                    write!(f, "{whole} {unit}")
                } else {
                    let digits = format!("{frac:03}");
                    write!(f, "{whole}.{} {unit}", digits.trim_end_matches('0'))
                };
            }
        }
        write!(f, "{} bit", self.0)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An amount of memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

/// The largest amount of memory qosd accepts for any setting (1 TiB): far
/// above what a gateway has, and every byte count fits `usize` on 64-bit.
pub const MAX_BYTE_SIZE: u64 = 1 << 40;

impl ByteSize {
    /// `n` bytes.
    pub const fn from_bytes(n: u64) -> Self {
        ByteSize(n)
    }
    /// Bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

/// Units an amount of memory may be written in (lower-case), with their
/// multiplier: SI (kB = 1000) and IEC (KiB = 1024), as `ls -h`, `free` and
/// systemd's `MemoryMax=` read them.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("byte", 1),
    ("bytes", 1),
    ("kb", 1_000),
    ("kib", 1 << 10),
    ("mb", 1_000_000),
    ("mib", 1 << 20),
    ("gb", 1_000_000_000),
    ("gib", 1 << 30),
    ("tb", 1_000_000_000_000),
    ("tib", 1 << 40),
];

impl FromStr for ByteSize {
    type Err = String;

    /// Parses "32 MiB", "512KiB", "1.5 GiB", "64 MB", "4096 B" or a bare
    /// number of bytes ("33554432", what a TOML integer reads as). Bit
    /// units are refused: memory is counted in bytes.
    fn from_str(text: &str) -> Result<Self, String> {
        let s = text.trim();
        if s.is_empty() {
            return Err("empty size".into());
        }
        let (number, unit_text) = split_number(s);
        if number.starts_with('-') {
            return Err(format!("size \"{text}\" is negative"));
        }
        let number = number.strip_prefix('+').unwrap_or(number);
        if number.is_empty() {
            return Err(format!("\"{text}\" does not start with a number"));
        }
        let unit = unit_text.to_ascii_lowercase();
        let scale = if unit.is_empty() {
            1
        } else if unit.contains("bit") {
            return Err(format!(
                "unit \"{unit_text}\" in \"{text}\" counts bits; write memory in bytes, e.g. \"{number} MiB\""
            ));
        } else {
            SIZE_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, scale)| *scale)
                .ok_or_else(|| {
                    format!(
                        "unknown unit \"{unit_text}\" in \"{text}\" (use B, KiB, MiB, GiB, or kB, MB, GB)"
                    )
                })?
        };
        let bytes = scale_decimal(number, scale).map_err(|e| format!("size \"{text}\": {e}"))?;
        if bytes > u128::from(MAX_BYTE_SIZE) {
            return Err(format!("size \"{text}\" is above the maximum of 1 TiB"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    /// The canonical spelling: the largest IEC unit that divides the size
    /// exactly ("32 MiB", "1536 KiB", "1000 B").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, scale) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if self.0 >= scale && self.0.is_multiple_of(scale) {
                return write!(f, "{} {unit}", self.0 / scale);
            }
        }
        write!(f, "{} B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An amount of bandwidth for a category: absolute, or a share of the link
/// rate in the direction it applies to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bandwidth {
    /// A fixed rate.
    Absolute(Rate),
    /// A percentage (0 < p <= 100) of the link rate.
    Percent(f64),
}

impl Bandwidth {
    /// The whole link.
    pub const FULL: Bandwidth = Bandwidth::Percent(100.0);
    /// Nothing (a `min` of zero: no guarantee).
    pub const NONE: Bandwidth = Bandwidth::Percent(0.0);

    /// The rate this amount means on a link of `link` (never above it).
    pub fn resolve(self, link: Rate) -> Rate {
        match self {
            Bandwidth::Absolute(r) => Rate(r.0.min(link.0)),
            Bandwidth::Percent(p) => Rate(((link.0 as f64) * p / 100.0).round() as u64),
        }
    }

    /// Parses "2 Mbit" or "30%". `allow_zero` admits "0" / "0%" (no guarantee).
    pub fn parse(text: &str, allow_zero: bool) -> Result<Self, String> {
        let s = text.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p = p.trim();
            let value: f64 = p
                .parse()
                .map_err(|_| format!("\"{text}\" is not a percentage (write e.g. \"30%\")"))?;
            if !value.is_finite() || value < 0.0 {
                return Err(format!("percentage \"{text}\" is negative"));
            }
            if value > 100.0 {
                return Err(format!("percentage \"{text}\" is above 100%"));
            }
            if value == 0.0 && !allow_zero {
                return Err(format!("\"{text}\" is zero; it must be above zero"));
            }
            return Ok(Bandwidth::Percent(value));
        }
        let (number, unit) = split_number(s);
        if number.parse::<f64>().is_ok_and(|v| v == 0.0)
            && allow_zero
            && (unit.is_empty() || format!("1 {unit}").parse::<Rate>().is_ok())
        {
            return Ok(Bandwidth::NONE);
        }
        s.parse::<Rate>().map(Bandwidth::Absolute)
    }

    /// True for an amount that guarantees nothing.
    pub fn is_zero(self) -> bool {
        match self {
            Bandwidth::Absolute(r) => r.0 == 0,
            Bandwidth::Percent(p) => p == 0.0,
        }
    }
}

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bandwidth::Absolute(r) => r.fmt(f),
            Bandwidth::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Bandwidth {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

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

fn parse_port(text: &str, whole: &str) -> Result<u16, String> {
    let t = text.trim();
    let n: u64 = t.parse().map_err(|_| {
        format!("\"{whole}\" is not a port or port range (write 443 or \"50000-50019\")")
    })?;
    u16::try_from(n).map_err(|_| format!("port {n} in \"{whole}\" is above 65535"))
}

impl FromStr for PortRange {
    type Err = String;
    /// "443" or "50000-50019" (also "50000:50019").
    fn from_str(text: &str) -> Result<Self, String> {
        let s = text.trim();
        let (a, b) = match s.split_once(['-', ':']) {
            Some((a, b)) => (a, b),
            None => (s, s),
        };
        let first = parse_port(a, text)?;
        let last = parse_port(b, text)?;
        if first > last {
            return Err(format!(
                "port range \"{text}\" is reversed (write {last}-{first})"
            ));
        }
        Ok(PortRange { first, last })
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

/// A host-name pattern: an exact name ("erp.example.com") or every name under
/// a domain ("*.sharepoint.com", which does not match "sharepoint.com" itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPattern {
    /// Lower-case name, without the "*." prefix.
    name: String,
    /// True for a "*." pattern.
    wildcard: bool,
}

impl HostPattern {
    /// True when `host` (any case, with or without a trailing dot) matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        if self.wildcard {
            let n = self.name.len();
            host.len() > n + 1
                && host.as_bytes().get(host.len() - n - 1) == Some(&b'.')
                && host
                    .get(host.len() - n..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(&self.name))
        } else {
            host.eq_ignore_ascii_case(&self.name)
        }
    }
    /// The name part, lower case, without "*.".
    pub fn name(&self) -> &str {
        &self.name
    }
    /// True for a "*." pattern.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }
}

impl FromStr for HostPattern {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let s = text.trim().trim_end_matches('.');
        let (wildcard, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if name.is_empty() {
            return Err(format!("host pattern \"{text}\" is empty"));
        }
        if name.len() > 253 {
            return Err(format!(
                "host pattern \"{text}\" is longer than a DNS name can be"
            ));
        }
        if name.contains('*') {
            return Err(format!(
                "host pattern \"{text}\": '*' is only allowed as a whole first label (\"*.example.com\")"
            ));
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!(
                    "host pattern \"{text}\" has an empty or over-long label"
                ));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "host pattern \"{text}\" contains characters not allowed in host names"
                ));
            }
        }
        Ok(HostPattern {
            name: name.to_ascii_lowercase(),
            wildcard,
        })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            write!(f, "*.{}", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

impl Serialize for HostPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses a duration written as "300s", "5m", "100ms", "1h 30m".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.parse::<f64>().is_ok() {
        return Err(format!(
            "duration \"{text}\" has no unit; write e.g. \"{s}s\" or \"{s}ms\""
        ));
    }
    humantime::parse_duration(s).map_err(|e| {
        format!(
            "cannot read \"{text}\" as a duration ({e}); write e.g. \"300s\", \"5m\" or \"100ms\""
        )
    })
}

/// Serializes a duration in the spelling `parse_duration` reads back.
pub fn serialize_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// The direction of a packet through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// LAN -> WAN.
    Upload,
    /// WAN -> LAN.
    Download,
}

impl Direction {
    /// Both directions, upload first.
    pub const BOTH: [Direction; 2] = [Direction::Upload, Direction::Download];

    /// 0 for upload, 1 for download: an index into per-direction arrays.
    #[inline]
    pub const fn index(self) -> usize {
        match self {
            Direction::Upload => 0,
            Direction::Download => 1,
        }
    }
    /// The element of a per-direction pair `[upload, download]`.
    #[inline]
    pub fn pick<T: Copy>(self, pair: [T; 2]) -> T {
        let [up, down] = pair;
        match self {
            Direction::Upload => up,
            Direction::Download => down,
        }
    }

    /// Shared access to the element of a per-direction pair.
    #[inline]
    pub fn pick_ref<T>(self, pair: &[T; 2]) -> &T {
        let [up, down] = pair;
        match self {
            Direction::Upload => up,
            Direction::Download => down,
        }
    }

    /// Mutable access to the element of a per-direction pair.
    #[inline]
    pub fn pick_mut<T>(self, pair: &mut [T; 2]) -> &mut T {
        let [up, down] = pair;
        match self {
            Direction::Upload => up,
            Direction::Download => down,
        }
    }

    /// The lower-case name used in the config, metrics and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

impl FromStr for Direction {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "upload" | "up" | "egress" | "outbound" => Ok(Direction::Upload),
            "download" | "down" | "ingress" | "inbound" => Ok(Direction::Download),
            _ => Err(format!(
                "unknown direction \"{text}\" (use \"upload\" or \"download\")"
            )),
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
