//! `[autorate]`: the floor and ceiling each direction's rate may move
//! between, checked against `[link]`, whose rates are where it starts.

use std::time::Duration;

use super::super::model::{Autorate, Link};
use super::super::raw::RawAutorate;
use super::super::units::{Direction, Rate, parse_duration};
use super::Problems;
use super::link::parse_link_rate;
use super::values::parse_bool;

/// Default floor, as a share of the configured (starting) rate.
const DEFAULT_MIN_SHARE: f64 = 0.2;

pub(super) fn autorate(raw: &RawAutorate, link: Option<&Link>, p: &mut Problems) -> Autorate {
    let enabled = p.optional("autorate.enabled", &raw.enabled, false, parse_bool);
    let delay_threshold = p.optional(
        "autorate.delay_threshold",
        &raw.delay_threshold,
        Duration::from_millis(15),
        parse_threshold,
    );
    let start = |dir| link.map(|l| l.rate(dir));
    let mut bound = |dir: Direction, which: &str, v: &Option<_>| -> Option<Rate> {
        let key = format!("autorate.{}_{which}", dir.as_str());
        v.as_ref().and_then(|v| p.parse(&key, v, parse_link_rate))
    };
    let up_min = bound(Direction::Upload, "min", &raw.upload_min);
    let up_max = bound(Direction::Upload, "max", &raw.upload_max);
    let down_min = bound(Direction::Download, "min", &raw.download_min);
    let down_max = bound(Direction::Download, "max", &raw.download_max);
    let mut resolve = |dir: Direction, min: Option<Rate>, max: Option<Rate>| {
        // Unset: the configured rate is the ceiling (autorate only ever
        // takes away what the line cannot carry) and a fifth of it the
        // floor.
        let start = start(dir).unwrap_or(Rate::from_bps(1));
        let min_v = min.unwrap_or(Rate::from_bps(
            ((start.bps() as f64 * DEFAULT_MIN_SHARE) as u64).max(8_000),
        ));
        let max_v = max.unwrap_or(start);
        if enabled && link.is_some() {
            let d = dir.as_str();
            if min_v > start {
                p.add(
                    format!("autorate.{d}_min"),
                    format!(
                        "{min_v} is above link.{d} ({start}), the rate autorate starts at; \
                         the floor must be at most the start"
                    ),
                );
            }
            if max_v < start {
                p.add(
                    format!("autorate.{d}_max"),
                    format!(
                        "{max_v} is below link.{d} ({start}), the rate autorate starts at; \
                         the ceiling must be at least the start"
                    ),
                );
            }
        }
        (min_v, max_v)
    };
    let (upload_min, upload_max) = resolve(Direction::Upload, up_min, up_max);
    let (download_min, download_max) = resolve(Direction::Download, down_min, down_max);
    Autorate {
        enabled,
        upload_min,
        upload_max,
        download_min,
        download_max,
        delay_threshold,
    }
}

fn parse_threshold(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(2) || d > Duration::from_secs(1) {
        return Err(format!(
            "delay threshold \"{s}\" must be between 2ms and 1s (default 15ms)"
        ));
    }
    Ok(d)
}
