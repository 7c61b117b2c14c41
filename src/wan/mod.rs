//! The WAN side as qosd sees it: how long the office's own packets wait in
//! the ISP's and the modem's buffers, measured passively on the flows qosd
//! forwards (the way pping does), with no probe sent and no reflector.
//!
//! A LAN packet leaving toward the WAN may be timed: the [`Stamper`] (on
//! the upload thread) picks at most one packet per flow at a time whose
//! answer can be recognised (its TCP timestamp, the SYN, the end of a data
//! segment, a DNS query's id, a call's RTCP sender report) and, when it leaves qosd's queue, writes its
//! departure on the shared [`ProbeBoard`]. The [`Meter`] (on the download
//! thread) recognises the answer as it arrives from the WAN: the round
//! trip from qosd to the far end and back, with neither qosd's own queues
//! nor the LAN in it. Karn's rule: a probed segment sent again is
//! withdrawn.
//!
//! Round trips are compared with the minimum of their own path (per remote
//! address), so a far server is not a full line. Where both ends use TCP
//! timestamps the meter also follows each flow's one-way delays against
//! the remote clock, which tells a queue growing on the way up from one
//! growing on the way down; other samples say only that one of the two
//! grew. The [`Meter`] also counts the bytes the far ends acknowledge: what
//! the upload direction delivered.

pub mod board;
pub mod clamp;
pub mod guard;
pub mod meter;
pub mod outside;
pub mod retrans;
pub mod rtcp;
pub mod stamper;
pub mod tcp;
pub mod window;

use std::time::Duration;

pub use self::board::{Probe, ProbeBoard};
pub use self::clamp::{DownloadWindows, UploadWindows, WindowBoard};
pub use self::guard::{GuardParams, IspGuard};
pub use self::meter::{Meter, Toward};
pub use self::outside::OutsideQueue;
pub use self::retrans::{Segment, SeqHigh};
pub use self::stamper::Stamper;

/// A WAN queueing-delay sample: how far one measurement was above the
/// minimum of its own path, and that minimum (the path's round trip).
/// Per-path minimums keep a far server or a slow host from looking like a
/// full line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DelaySample {
    /// Delay above the path's minimum.
    pub queue: Duration,
    /// The path's minimum round trip.
    pub base: Duration,
    /// Measured on one direction alone (a one-way delay), not on a round
    /// trip: a third of the round-trip threshold applies.
    pub one_way: bool,
}

/// A TCP round trip the [`Meter`] completed: from a LAN packet's departure
/// from qosd toward the WAN to the far end's answer arriving, with neither
/// qosd's queues nor the LAN in it. Every TCP sample the meter counts in
/// [`Meter::samples_by_source`] is also handed out as one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRtt {
    /// The round trip, nanoseconds.
    pub rtt_ns: u64,
    /// The timed LAN packet carried data (the office's upload: a LAN
    /// sender's segment and the far end's acknowledgement of it); false
    /// for a LAN receiver's acknowledgement or a client's SYN, answered by
    /// the far end's next segment (the loop that paces what the far end
    /// sends to the office: the download).
    pub data: bool,
}

impl TcpRtt {
    /// The direction of the traffic whose round trip this is: upload for
    /// a LAN sender's data segment, download for a LAN receiver's
    /// acknowledgement or SYN.
    pub fn direction(self) -> crate::config::Direction {
        if self.data {
            crate::config::Direction::Upload
        } else {
            crate::config::Direction::Download
        }
    }
}

/// What a delay sample was taken from (the `source` label of
/// `qosd_wan_delay_samples_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A TCP timestamp echoed (RFC 7323): data and pure ACKs alike.
    TcpTimestamp,
    /// A SYN answered by its SYN-ACK.
    TcpHandshake,
    /// A data segment's end acknowledged (flows without timestamps).
    TcpAck,
    /// A DNS query answered.
    Dns,
    /// A call's RTCP sender report echoed in the far end's report block
    /// (its hold time taken off).
    Rtcp,
}

impl Source {
    /// Every source, in [`Source::index`] order.
    pub const ALL: [Source; 5] = [
        Source::TcpTimestamp,
        Source::TcpHandshake,
        Source::TcpAck,
        Source::Dns,
        Source::Rtcp,
    ];

    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::TcpTimestamp => "tcp_timestamp",
            Source::TcpHandshake => "tcp_handshake",
            Source::TcpAck => "tcp_ack",
            Source::Dns => "dns",
            Source::Rtcp => "rtcp",
        }
    }

    /// Position in [`Source::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Non-zero code on the board.
    pub(crate) const fn code(self) -> u32 {
        self as u32 + 1
    }

    pub(crate) fn from_code(c: u32) -> Option<Source> {
        Source::ALL
            .get(usize::try_from(c.checked_sub(1)?).ok()?)
            .copied()
    }
}
