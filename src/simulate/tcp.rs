//! The TCP-like sender of a bulk flow: slow start, then additive increase
//! and halving on loss (at most once per round trip), one ACK per two
//! segments. Enough for a deep buffer to fill the way it does in an
//! office, and for CoDel's drops to slow the sender down.

use super::scenario::ONE_WAY;
use crate::time::Instant;

/// TCP segment payload and frame size.
pub(super) const MSS: usize = 1448;

/// Largest congestion window, in segments (a 4 MB receive window).
const MAX_CWND: f64 = 2900.0;

/// TCP-like sender state of a bulk flow.
#[derive(Debug, Clone, Default)]
pub(super) struct Tcp {
    cwnd: f64,
    ssthresh: f64,
    inflight: u32,
    /// Segments delivered to the receiver not yet acknowledged.
    unacked: u32,
    last_loss: Instant,
    seq: u32,
}

impl Tcp {
    /// A connection just opened: slow start from 10 segments.
    pub(super) fn opened() -> Self {
        Tcp {
            cwnd: 10.0,
            ssthresh: f64::INFINITY,
            ..Tcp::default()
        }
    }

    /// The sequence number of the next segment, if the window lets one go.
    pub(super) fn send(&mut self) -> Option<u32> {
        if f64::from(self.inflight) >= self.cwnd {
            return None;
        }
        self.inflight += 1;
        self.seq = self.seq.wrapping_add(MSS as u32);
        Some(self.seq)
    }

    /// A segment reached the receiver: the number of segments to
    /// acknowledge when an ACK is due (every second segment).
    pub(super) fn delivered(&mut self) -> Option<u32> {
        self.unacked += 1;
        if self.unacked < 2 {
            return None;
        }
        Some(std::mem::take(&mut self.unacked))
    }

    /// An ACK for `n` segments reached the sender: the window grows.
    pub(super) fn acked(&mut self, n: u32) {
        self.inflight = self.inflight.saturating_sub(n);
        let n = f64::from(n);
        self.cwnd = if self.cwnd < self.ssthresh {
            self.cwnd + n
        } else {
            self.cwnd + n / self.cwnd
        };
        self.cwnd = self.cwnd.min(MAX_CWND);
    }

    /// The sender learned at `now` that a segment was lost.
    pub(super) fn lost(&mut self, now: Instant) {
        self.inflight = self.inflight.saturating_sub(1);
        // Halve at most once per round trip.
        if now.nanos_since(self.last_loss) > 4 * ONE_WAY.as_nanos() as u64 {
            self.ssthresh = (self.cwnd / 2.0).max(2.0);
            self.cwnd = self.ssthresh;
            self.last_loss = now;
        }
    }
}
