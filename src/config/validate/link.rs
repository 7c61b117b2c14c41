//! `[interfaces]` and `[link]`: the two sides qosd bridges and the rates
//! it shapes them to.

use std::str::FromStr;
use std::time::Duration;

use super::super::model::{Interfaces, Link, PerDirection};
use super::super::raw::{RawInterfaces, RawLink};
use super::super::units::{Rate, parse_duration};
use super::Problems;
use super::values::{int_in_range, parse_bool, parse_interface};

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
    isp_queue_guard: bool,
    isp_queue_target: Duration,
    window_clamp: bool,
}

impl LinkRates {
    /// The link, when both rates are valid.
    pub(super) fn link(&self) -> Option<Link> {
        Some(Link {
            upload: self.upload?,
            download: self.download?,
            overhead: self.overhead,
            isp_queue_guard: self.isp_queue_guard,
            isp_queue_target: self.isp_queue_target,
            window_clamp: self.window_clamp,
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
    let isp_queue_guard = p.optional(
        "link.isp_queue_guard",
        &raw.isp_queue_guard,
        true,
        parse_bool,
    );
    let isp_queue_target = p.optional(
        "link.isp_queue_target",
        &raw.isp_queue_target,
        DEFAULT_ISP_QUEUE_TARGET,
        parse_isp_queue_target,
    );
    let window_clamp = p.optional("link.window_clamp", &raw.window_clamp, true, parse_bool);
    LinkRates {
        upload,
        download,
        overhead,
        isp_queue_guard,
        isp_queue_target,
        window_clamp,
    }
}

/// The default of `link.isp_queue_target`: above the noise of a 1 ms
/// remote clock, well under what a call notices.
pub const DEFAULT_ISP_QUEUE_TARGET: Duration = Duration::from_millis(3);

fn parse_isp_queue_target(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(1) || d > Duration::from_millis(100) {
        return Err(format!(
            "ISP queue target \"{s}\" must be between 1ms and 100ms (default 3ms)"
        ));
    }
    Ok(d)
}

pub(super) fn parse_link_rate(s: &str) -> Result<Rate, String> {
    let r = Rate::from_str(s)?;
    if r.bps() < MIN_LINK_BPS {
        return Err(format!("link rate {r} is below the minimum of 8 kbit"));
    }
    Ok(r)
}
