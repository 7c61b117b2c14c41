//! Capture replay: every frame of a capture handed to the engines at its
//! timestamp (its direction told from its addresses), with no feedback:
//! what was sent is replayed as sent.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::events::Sim;
use crate::config::{Config, Direction};
use crate::engine::frame::Frame;
use crate::flow::FlowKey;
use crate::io::pcap::{PcapError, for_each_frame};
use crate::offline::capture_direction;
use crate::packet::PacketMeta;
use crate::shaper::LinkQueue;
use crate::time::Instant;

/// Replays the capture at `path` at its timestamps through queues made by
/// `queue` (no feedback: what was sent is replayed), then lets them drain.
pub(super) fn replay<Q: LinkQueue<Frame>>(
    cfg: &Config,
    path: &Path,
    queue: impl Fn(Direction) -> Q,
) -> Result<(Sim<Q>, Duration), PcapError> {
    let mut frames: Vec<(Duration, Vec<u8>)> = Vec::new();
    for_each_frame(path, |ts, f| frames.push((ts, f.to_vec())))?;
    let first = frames.first().map(|(t, _)| *t).unwrap_or_default();
    let duration = frames
        .last()
        .map(|(t, _)| t.saturating_sub(first))
        .unwrap_or_default()
        .max(Duration::from_millis(1));
    let mut sim = Sim::new(cfg, queue, Vec::new());
    // Initiators, to tell direction when both ends are local or remote.
    let mut seen = HashMap::new();
    for (ts, bytes) in &frames {
        let now = Instant::ZERO + ts.saturating_sub(first);
        while let Some(Reverse((t, _, _))) = sim.events.peek() {
            if *t > now {
                break;
            }
            if let Some(Reverse((t, _, ev))) = sim.events.pop() {
                sim.handle(t, ev);
            }
        }
        let pkt = PacketMeta::parse(bytes);
        let (key, side) = FlowKey::of(&pkt);
        let initiator = *seen.entry(key).or_insert(side);
        let d = capture_direction(&pkt, side == initiator);
        sim.scratch.clear();
        sim.scratch.extend_from_slice(bytes);
        sim.send(d, now);
    }
    let end = Instant::ZERO + duration + Duration::from_secs(10);
    while let Some(Reverse((t, _, ev))) = sim.events.pop() {
        if t > end {
            break;
        }
        sim.handle(t, ev);
    }
    Ok((sim, duration))
}
