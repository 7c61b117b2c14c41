//! The ISP line between the gateway and the Internet, one direction of
//! it: a deep tail-drop byte buffer (the modem's or the ISP's) in front of
//! a capacity that follows a [`LinkTrace`]. Upload frames reach it after
//! qosd's upload queue; download frames reach it from the Internet, before
//! qosd's download queue. When the capacity falls below qosd's rate the
//! queue forms here, outside qosd, as on a real line.

use std::collections::VecDeque;
use std::time::Duration;

use super::trace::LinkTrace;
use crate::config::Direction;
use crate::engine::frame::Frame;
use crate::shaper::ShapedPacket;
use crate::time::Instant;

/// The line's buffer, in time at its peak capacity.
pub const LINE_BUFFER: Duration = Duration::from_millis(300);

struct Queued {
    frame: Frame,
    arrived: Instant,
}

/// One direction of the line.
pub(super) struct Line {
    dir: Direction,
    queue: VecDeque<Queued>,
    /// Bytes queued, the frame on the wire included.
    bytes: u64,
    limit: u64,
    /// Bytes the line's framing adds to every frame (`link.overhead`).
    overhead: i32,
    /// When the head frame started onto the wire, if it has.
    started: Option<Instant>,
}

/// A frame the line finished sending.
pub(super) struct Sent {
    pub(super) frame: Frame,
    /// Time it waited before going onto the wire.
    pub(super) waited: Duration,
    /// Bytes it took on the wire (overhead included).
    pub(super) wire_bytes: u64,
}

impl Line {
    /// Direction `dir` of a line following `trace`, with a buffer of
    /// [`LINE_BUFFER`] at its peak capacity.
    pub(super) fn new(dir: Direction, trace: &LinkTrace, overhead: i32) -> Self {
        let limit = (u128::from(trace.peak(dir).bytes_per_sec()) * LINE_BUFFER.as_nanos()
            / 1_000_000_000) as u64;
        Line {
            dir,
            queue: VecDeque::with_capacity(1024),
            bytes: 0,
            limit: limit.max(16 * 1514),
            overhead,
            started: None,
        }
    }

    fn wire_bytes(&self, len: usize) -> u64 {
        (len as i64 + i64::from(self.overhead)).max(1) as u64
    }

    /// When the frame now at the head, started at `now`, will be sent.
    fn finish(&self, now: Instant, trace: &LinkTrace) -> Option<Instant> {
        let head = self.queue.front()?;
        let rate = trace.rate(self.dir, now.saturating_since(Instant::ZERO));
        let bits = self.wire_bytes(head.frame.len()) * 8;
        let nanos = (u128::from(bits) * 1_000_000_000 / u128::from(rate.bps().max(1))) as u64;
        Some(now.add_nanos(nanos.max(1)))
    }

    /// Takes `frame` at `now`: `Err(frame)` when the buffer is full (tail
    /// drop); `Ok(Some(t))` when the line was idle and the frame is on the
    /// wire until `t`.
    pub(super) fn push(
        &mut self,
        frame: Frame,
        now: Instant,
        trace: &LinkTrace,
    ) -> Result<Option<Instant>, Frame> {
        let len = frame.len() as u64;
        if self.bytes.saturating_add(len) > self.limit {
            return Err(frame);
        }
        self.bytes += len;
        self.queue.push_back(Queued {
            frame,
            arrived: now,
        });
        if self.started.is_some() {
            return Ok(None);
        }
        self.started = Some(now);
        Ok(self.finish(now, trace))
    }

    /// The head frame is on the far side at `now`: it leaves, and the next
    /// one (if any) goes onto the wire until the instant returned.
    pub(super) fn done(
        &mut self,
        now: Instant,
        trace: &LinkTrace,
    ) -> (Option<Sent>, Option<Instant>) {
        let started = self.started.take().unwrap_or(now);
        let Some(head) = self.queue.pop_front() else {
            return (None, None);
        };
        let len = head.frame.len();
        self.bytes = self.bytes.saturating_sub(len as u64);
        let sent = Sent {
            waited: started.saturating_since(head.arrived),
            wire_bytes: self.wire_bytes(len),
            frame: head.frame,
        };
        let next = if self.queue.is_empty() {
            None
        } else {
            self.started = Some(now);
            self.finish(now, trace)
        };
        (Some(sent), next)
    }
}
