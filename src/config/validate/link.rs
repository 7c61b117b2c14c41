//! `[interfaces]` and `[link]`: the two sides qosd bridges and the rates
//! it shapes them to.

use std::str::FromStr;

use super::super::model::{Interfaces, Link, PerDirection};
use super::super::raw::{RawInterfaces, RawLink};
use super::super::units::Rate;
use super::Problems;
use super::values::{int_in_range, parse_interface};

/// The slowest link qosd will shape (1 kbyte/s).
const MIN_LINK_BPS: u64 = 8_000;

pub(super) fn interfaces(raw: &RawInterfaces, p: &mut Problems) -> Interfaces {
    let lan = p.optional(
        "interfaces.lan",
        &raw.lan,
        "lan0".to_owned(),
        parse_interface,
    );
    let wan = p.optional(
        "interfaces.wan",
        &raw.wan,
        "wan0".to_owned(),
        parse_interface,
    );
    if lan == wan {
        p.add(
            "interfaces.wan",
            format!("the LAN and WAN interfaces are both \"{lan}\"; they must differ"),
        );
    }
    Interfaces { lan, wan }
}

/// `[link]` as far as it is valid: the categories' rates can only be
/// checked against the link when both of its rates are.
pub(super) struct LinkRates {
    upload: Option<Rate>,
    download: Option<Rate>,
    overhead: PerDirection<i32>,
}

impl LinkRates {
    /// The link, when both rates are valid.
    pub(super) fn link(&self) -> Option<Link> {
        Some(Link {
            upload: self.upload?,
            download: self.download?,
            overhead: self.overhead,
        })
    }
}

pub(super) fn link(raw: &RawLink, p: &mut Problems) -> LinkRates {
    let hint = "set the measured line rate minus 5-10%, e.g. \"20 Mbit\"";
    let upload = p.required("link.upload", &raw.upload, hint, parse_link_rate);
    let download = p.required("link.download", &raw.download, hint, parse_link_rate);
    let overhead = p.per_direction("link.overhead", &raw.overhead, 0, |s| {
        int_in_range(-64, 256, "overhead")(s).map(|n| n as i32)
    });
    LinkRates {
        upload,
        download,
        overhead,
    }
}

pub(super) fn parse_link_rate(s: &str) -> Result<Rate, String> {
    let r = Rate::from_str(s)?;
    if r.bps() < MIN_LINK_BPS {
        return Err(format!("link rate {r} is below the minimum of 8 kbit"));
    }
    Ok(r)
}
