//! The direction of a packet through the gateway, upload or download.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

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
    /// The opposite direction.
    #[inline]
    pub const fn other(self) -> Direction {
        match self {
            Direction::Upload => Direction::Download,
            Direction::Download => Direction::Upload,
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
