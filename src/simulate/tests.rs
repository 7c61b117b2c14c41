use std::time::Duration;

use super::*;
use crate::config::load_embedded;

#[test]
fn office_under_load_protects_voice() {
    let cfg = load_embedded().unwrap();
    let r = run_office(&cfg, Duration::from_secs(20));
    let voice_q = &r.qosd["voice"];
    let voice_f = &r.fifo["voice"];
    // The calls get through with qosd, with little queueing...
    assert!(
        voice_q.delay_p99_ms < 5.0,
        "voice p99 with qosd {} ms",
        voice_q.delay_p99_ms
    );
    assert!(
        voice_q.delivered_bps > 0.95 * voice_q.offered_bps,
        "{voice_q:?}"
    );
    // ...and suffer in the modem's FIFO.
    assert!(
        voice_f.delay_p99_ms > 100.0,
        "voice p99 without qosd {} ms",
        voice_f.delay_p99_ms
    );
    // The link is used: bulk and browsing fill what is left.
    let total: f64 = r.qosd.values().map(|c| c.delivered_bps).sum();
    let link = (cfg.link.upload.bps() + cfg.link.download.bps()) as f64;
    assert!(total > 0.85 * link, "only {total} of {link} delivered");
    // Business gets at least its guarantee in both directions.
    let business = &r.qosd["business"];
    let min_up = cfg.category[cfg.category_id("business").unwrap().index()]
        .min_rate(Direction::Upload, &cfg.link)
        .bps() as f64;
    assert!(
        business.upload.as_ref().unwrap().delivered_bps >= 0.95 * min_up,
        "{business:?}"
    );
    // Every category the office uses shows up.
    for name in [
        "control",
        "voice",
        "video",
        "business",
        "browsing",
        "streaming",
        "bulk",
    ] {
        assert!(
            r.qosd[name].offered_bps > 0.0,
            "no {name} traffic classified"
        );
    }
}
