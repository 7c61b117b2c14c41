//! `[flows]`: the flow table's size and its idle timeouts; `[shaper]`: who
//! shares a category.

use std::time::Duration;

use super::super::model::{Fairness, Flows, ShaperOptions};
use super::super::raw::{RawFlows, RawShaper};
use super::Problems;
use super::values::{int_in_range, parse_max, parse_timeout};

pub(super) fn flows(raw: &RawFlows, p: &mut Problems) -> Flows {
    let max_flows = p.optional("flows.max_flows", &raw.max_flows, 65_536, |s| {
        int_in_range(16, 16_777_216, "max_flows")(s).map(|n| n as u32)
    });
    let tcp_idle = Duration::from_secs(600);
    let udp_idle = Duration::from_secs(60);
    let closed = Duration::from_secs(10);
    Flows {
        max_flows,
        tcp_idle_timeout: p.optional(
            "flows.tcp_idle_timeout",
            &raw.tcp_idle_timeout,
            tcp_idle,
            parse_timeout,
        ),
        udp_idle_timeout: p.optional(
            "flows.udp_idle_timeout",
            &raw.udp_idle_timeout,
            udp_idle,
            parse_timeout,
        ),
        tcp_closed_timeout: p.optional(
            "flows.tcp_closed_timeout",
            &raw.tcp_closed_timeout,
            closed,
            parse_timeout,
        ),
    }
}

pub(super) fn shaper(raw: &RawShaper, p: &mut Problems) -> ShaperOptions {
    ShaperOptions {
        fairness: p.optional(
            "shaper.fairness",
            &raw.fairness,
            Fairness::Host,
            |s| match s.trim().to_ascii_lowercase().as_str() {
                "host" => Ok(Fairness::Host),
                "flow" => Ok(Fairness::Flow),
                _ => Err(format!(
                    "unknown fairness \"{s}\" (use \"host\": hosts share, then their flows; or \"flow\")"
                )),
            },
        ),
        host_max: raw
            .host_max
            .as_ref()
            .and_then(|v| p.parse("shaper.host_max", v, parse_max)),
    }
}
