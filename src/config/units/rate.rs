//! Rates ("20 Mbit") and the bandwidth of a category: a rate or a share
//! of the link ("30%").

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::number::{scale_decimal, split_number};

/// A data rate in bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
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
