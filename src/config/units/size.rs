//! Amounts of memory ("32 MiB").

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::number::{scale_decimal, split_number};

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
