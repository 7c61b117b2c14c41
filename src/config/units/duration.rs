//! Durations ("300s", "5m", "100ms"), read and written back.

use std::time::Duration;

use serde::Serializer;

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
