//! The probe board: where the LAN-to-WAN side records when a probed
//! packet left qosd, and the WAN-to-LAN side finds it when the answer
//! arrives. Shared by the two data-path threads without a lock: each slot
//! is written by the upload thread only (a seqlock over its fields) and
//! marked answered by the download thread only, so a probe costs each
//! thread one write to a line the other reads, and a packet of a flow
//! without a probe outstanding costs the download thread one read.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use super::Source;
use crate::time::Instant;

/// Slots on the board: flows whose ids share the low bits share a slot
/// (the stamper takes a slot over only when its probe is answered or old).
pub const SLOTS: usize = 4096;
const MASK: u32 = SLOTS as u32 - 1;
const HAS_END: u32 = 0x100;

/// A probe a LAN packet carries from ingress to its departure toward the
/// WAN: which flow, what the answer will echo, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The flow's id (low 32 bits).
    pub flow: u32,
    /// What the answer echoes: a TSval, the SYN's sequence number plus
    /// one, the end of a data segment, a DNS id.
    pub key: u32,
    /// How it is matched.
    pub source: Source,
    /// For a data segment, the sequence number after its last byte: only
    /// an acknowledgement of exactly that answers it. One that covers
    /// more was sent when a later segment arrived (delayed ACKs: a
    /// receiver acknowledges every second segment), so it would time the
    /// wait for that segment, not the line.
    pub end: Option<u32>,
    /// Not the probe: the flow's next data segment after it, whose
    /// departure the board also keeps (a receiver that acknowledges every
    /// second segment answers the pair when this one arrives).
    pub follower: bool,
}

/// A probe as the board holds it: the probe, when it left, and the write
/// that placed it (to mark it answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The probe.
    pub probe: Probe,
    /// When it left qosd toward the WAN.
    pub sent: Instant,
    /// The seqlock's value for this write.
    pub version: u32,
    /// The flow's next data segment after the probe: when it left, and
    /// the sequence number after it.
    pub next: Option<(Instant, u32)>,
}

#[derive(Default)]
#[repr(align(64))]
struct Slot {
    /// Seqlock: odd while the upload thread writes.
    version: AtomicU32,
    flow: AtomicU32,
    key: AtomicU32,
    /// [`Source::code`]; 0 for none (withdrawn); bit 8 set when `end`
    /// holds the probe's end.
    source: AtomicU32,
    end: AtomicU32,
    sent: AtomicU64,
    /// The version the download thread answered (so the stamper knows
    /// the slot is free again).
    answered: AtomicU32,
    /// The follower of the probe of version `next_version`.
    next_sent: AtomicU64,
    next_end: AtomicU32,
    next_version: AtomicU32,
}

/// The shared board.
pub struct ProbeBoard {
    slots: Box<[Slot]>,
}

impl Default for ProbeBoard {
    fn default() -> Self {
        Self::new()
    }
}

impl ProbeBoard {
    /// An empty board.
    pub fn new() -> Self {
        ProbeBoard {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }

    /// The slot index of `flow`.
    #[inline]
    pub fn slot_of(flow: u32) -> usize {
        (flow & MASK) as usize
    }

    /// Records that `probe` left at `sent` (upload thread only). Returns
    /// the version written.
    pub fn stamp(&self, probe: Probe, sent: Instant) -> u32 {
        let code = probe.source.code() | if probe.end.is_some() { HAS_END } else { 0 };
        self.write(probe.flow, (probe.key, probe.end.unwrap_or(0)), code, sent)
    }

    /// Records that the follower of the probe written as `version` in
    /// `flow`'s slot, ending at `end`, left at `sent` (upload thread only).
    pub fn follow(&self, flow: u32, version: u32, end: u32, sent: Instant) {
        if let Some(s) = self.slots.get(Self::slot_of(flow)) {
            s.next_sent.store(sent.as_nanos(), Ordering::Relaxed);
            s.next_end.store(end, Ordering::Relaxed);
            s.next_version.store(version, Ordering::Release);
        }
    }

    /// Withdraws the probe in `flow`'s slot, if it is `flow`'s (upload
    /// thread only): its answer would not measure the line (Karn: the
    /// probed segment was sent again).
    pub fn withdraw(&self, flow: u32) {
        if let Some(s) = self.slots.get(Self::slot_of(flow))
            && s.flow.load(Ordering::Relaxed) == flow
        {
            self.write(flow, (0, 0), 0, Instant::ZERO);
        }
    }

    fn write(&self, flow: u32, (key, end): (u32, u32), source: u32, sent: Instant) -> u32 {
        let Some(s) = self.slots.get(Self::slot_of(flow)) else {
            return 0;
        };
        let v = s.version.load(Ordering::Relaxed);
        s.version.store(v.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        s.flow.store(flow, Ordering::Relaxed);
        s.key.store(key, Ordering::Relaxed);
        s.end.store(end, Ordering::Relaxed);
        s.source.store(source, Ordering::Relaxed);
        s.sent.store(sent.as_nanos(), Ordering::Relaxed);
        let done = v.wrapping_add(2);
        s.version.store(done, Ordering::Release);
        done
    }

    /// The unanswered probe in `flow`'s slot, if it is `flow`'s.
    #[inline]
    pub fn pending(&self, flow: u32) -> Option<Stamp> {
        let s = self.slots.get(Self::slot_of(flow))?;
        let v1 = s.version.load(Ordering::Acquire);
        if v1 & 1 == 1 || s.answered.load(Ordering::Relaxed) == v1 {
            return None;
        }
        let (f, key, source, sent, end) = (
            s.flow.load(Ordering::Relaxed),
            s.key.load(Ordering::Relaxed),
            s.source.load(Ordering::Relaxed),
            s.sent.load(Ordering::Relaxed),
            s.end.load(Ordering::Relaxed),
        );
        let next = (s.next_version.load(Ordering::Acquire) == v1).then(|| {
            (
                Instant::from_nanos(s.next_sent.load(Ordering::Relaxed)),
                s.next_end.load(Ordering::Relaxed),
            )
        });
        fence(Ordering::Acquire);
        if s.version.load(Ordering::Relaxed) != v1 || f != flow {
            return None;
        }
        Some(Stamp {
            probe: Probe {
                flow,
                key,
                source: Source::from_code(source & !HAS_END)?,
                end: (source & HAS_END != 0).then_some(end),
                follower: false,
            },
            sent: Instant::from_nanos(sent),
            version: v1,
            // A follower recorded for an earlier write of the same
            // version number (after 2^32 writes) would be older than the
            // probe.
            next: next.filter(|(t, _)| t.as_nanos() >= sent),
        })
    }

    /// Marks the probe written as `version` in `flow`'s slot answered
    /// (download thread only).
    pub fn answer(&self, flow: u32, version: u32) {
        if let Some(s) = self.slots.get(Self::slot_of(flow)) {
            s.answered.store(version, Ordering::Relaxed);
        }
    }

    /// Whether the probe written as `version` in `flow`'s slot was
    /// answered.
    pub fn is_answered(&self, flow: u32, version: u32) -> bool {
        self.slots
            .get(Self::slot_of(flow))
            .is_some_and(|s| s.answered.load(Ordering::Relaxed) == version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_found_once_and_only_by_its_flow() {
        let b = ProbeBoard::new();
        let p = Probe {
            flow: 7,
            key: 42,
            source: Source::TcpTimestamp,
            end: Some(7),
            follower: false,
        };
        let v = b.stamp(p, Instant::from_nanos(5));
        let s = b.pending(7).unwrap();
        assert_eq!((s.probe, s.sent, s.version), (p, Instant::from_nanos(5), v));
        assert_eq!(s.next, None);
        b.follow(7, v, 9, Instant::from_nanos(6));
        assert_eq!(
            b.pending(7).unwrap().next,
            Some((Instant::from_nanos(6), 9))
        );
        // Another flow in the same slot sees nothing.
        assert_eq!(b.pending(7 + SLOTS as u32), None);
        b.answer(7, v);
        assert!(b.is_answered(7, v));
        assert_eq!(b.pending(7), None);
        // A new probe replaces the answered one.
        let v2 = b.stamp(Probe { key: 43, ..p }, Instant::from_nanos(9));
        assert_ne!(v, v2);
        assert_eq!(b.pending(7).unwrap().probe.key, 43);
        b.withdraw(7);
        assert_eq!(b.pending(7), None);
    }

    #[test]
    fn readers_never_see_half_a_write() {
        let b = std::sync::Arc::new(ProbeBoard::new());
        let w = std::sync::Arc::clone(&b);
        let writer = std::thread::spawn(move || {
            for i in 1..200_000u32 {
                // key and sent always agree: a torn read would not.
                let p = Probe {
                    flow: 3,
                    key: i,
                    source: Source::TcpAck,
                    end: Some(i),
                    follower: false,
                };
                w.stamp(p, Instant::from_nanos(u64::from(i) * 10));
            }
        });
        let mut seen = 0;
        while !writer.is_finished() {
            if let Some(s) = b.pending(3) {
                assert_eq!(s.sent.as_nanos(), u64::from(s.probe.key) * 10);
                seen += 1;
            }
        }
        writer.join().unwrap();
        assert!(seen > 0 || b.pending(3).is_some());
    }
}
