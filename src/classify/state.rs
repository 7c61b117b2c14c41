//! What classification keeps per flow: the facts learned and the verdict
//! under a per-flow lock ([`FlowClass`]), and the verdict published in one
//! atomic word ([`ClassCell`]) so that a settled flow's packets read it
//! without taking any lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::decided_by::DecidedBy;
use super::dns_stream::DnsTcp;
use super::inspect::{DpiState, Media};
use super::matcher::AppId;
use super::media_watch::MediaWatch;
use crate::config::{CategoryId, Direction};
use crate::flow::FlowValue;

/// A flow's classification: the facts learned and the verdict.
#[derive(Debug, Default)]
pub struct FlowClass {
    /// Category per [`Direction::index`].
    pub category: [CategoryId; 2],
    /// The app recognised, if any.
    pub app: Option<AppId>,
    /// How the verdict (of the upload direction, when they differ) was reached.
    pub decided_by: DecidedBy,
    /// True once the verdict is final.
    pub settled: bool,
    /// Host name learned (SNI, HTTP Host or DNS).
    pub host: Option<Box<str>>,
    /// How `host` was learned.
    pub(super) host_source: DecidedBy,
    /// App from signatures (payload, ip-range, port, endpoint) and how.
    pub(super) sig_app: Option<(AppId, DecidedBy)>,
    /// The category of the call whose LAN endpoint this flow shares, when
    /// its app was inherited from it ([`DecidedBy::Endpoint`]).
    pub(super) inherited: Option<CategoryId>,
    /// Real-time media seen.
    pub(super) media: Media,
    /// Packets inspected so far.
    pub(super) inspected: u16,
    /// Classifier generation this verdict belongs to (0: never classified).
    pub(super) generation: u32,
    /// Still watching for the volume heuristic.
    pub(super) watch_volume: bool,
    /// The initiator sent to an Ethernet group address (a broadcast to
    /// its subnet, say).
    pub(super) l2_group: bool,
    /// A call watched for its lifetime, to move between voice and video
    /// (boxed: only calls pay for it; present only while some direction
    /// is watched).
    pub(super) media_watch: Option<Box<MediaWatch>>,
    /// DPI working state while pending.
    pub(super) dpi: Option<Box<DpiState>>,
    /// A DNS server's TCP stream, while a message is incomplete.
    pub(super) dns_stream: Option<Box<DnsTcp>>,
}

impl FlowClass {
    /// True when the host name was read from the flow's own packets.
    pub fn host_source(&self) -> DecidedBy {
        self.host_source
    }

    /// Bytes of the DPI memory budget this flow holds (its pending
    /// inspection state and an incomplete DNS-over-TCP message).
    pub fn dpi_bytes(&self) -> usize {
        self.dpi.as_ref().map_or(0, |d| d.reserved_bytes())
            + self.dns_stream.as_ref().map_or(0, |d| d.res.bytes())
    }
}

/// A flow's classification as the flow table keeps it (its
/// [`FlowValue`]): the published verdict, and the full state behind a
/// lock that only unsettled flows (their first packets, or the first
/// packet after a reload) and readers such as the API take.
///
/// The verdict comes last: the flow table puts the fields both data-path
/// threads read right after the value, and the lock and state (touched
/// only while unsettled) keep them away from the upload counters before.
#[derive(Debug, Default)]
#[repr(C)]
pub struct ClassCell {
    state: Mutex<FlowClass>,
    /// [`Published`], packed: bits 0-7 the upload category, 8-15 the
    /// download category, bit 16 settled, bit 17 watching for volume, bits
    /// 18-30 the app's id plus one (0: none), bit 31 watching a call's
    /// media, bits 32-63 the classifier generation. Zero: never
    /// classified.
    verdict: AtomicU64,
}

/// The verdict as the per-packet path reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Published {
    pub category: [CategoryId; 2],
    /// The app, for per-app accounting (ids past [`MAX_PUBLISHED_APP`]
    /// read as none).
    pub app: Option<AppId>,
    pub settled: bool,
    pub watch_volume: bool,
    pub watch_media: bool,
    pub generation: u32,
}

/// The highest app id the verdict word holds (13 bits, less the code for
/// none): a catalog is far smaller (a few hundred apps), and an app beyond
/// it would only be counted as unknown.
pub(super) const MAX_PUBLISHED_APP: AppId = (1 << 13) - 2;

impl Published {
    fn pack(self) -> u64 {
        let app = self
            .app
            .filter(|a| *a <= MAX_PUBLISHED_APP)
            .map_or(0, |a| u64::from(a) + 1);
        u64::from(self.category[0].0)
            | u64::from(self.category[1].0) << 8
            | u64::from(self.settled) << 16
            | u64::from(self.watch_volume) << 17
            | app << 18
            | u64::from(self.watch_media) << 31
            | u64::from(self.generation) << 32
    }

    fn unpack(v: u64) -> Self {
        let app = ((v >> 18) & 0x1fff) as AppId;
        Published {
            category: [CategoryId(v as u8), CategoryId((v >> 8) as u8)],
            app: app.checked_sub(1),
            settled: v & 1 << 16 != 0,
            watch_volume: v & 1 << 17 != 0,
            watch_media: v & 1 << 31 != 0,
            generation: (v >> 32) as u32,
        }
    }

    fn of(c: &FlowClass) -> Self {
        Published {
            category: c.category,
            app: c.app,
            settled: c.settled,
            watch_volume: c.watch_volume,
            watch_media: c.media_watch.is_some(),
            generation: c.generation,
        }
    }
}

impl ClassCell {
    /// First byte of the verdict word (layout tests).
    #[cfg(test)]
    pub(crate) fn verdict_addr(&self) -> *const u8 {
        &self.verdict as *const AtomicU64 as *const u8
    }

    /// The verdict as last published.
    #[inline]
    pub(super) fn published(&self) -> Published {
        Published::unpack(self.verdict.load(Ordering::Acquire))
    }

    /// Publishes what `state` now says.
    pub(super) fn publish(&self, state: &FlowClass) {
        self.verdict
            .store(Published::of(state).pack(), Ordering::Release);
    }

    /// The category of the flow's packets travelling `dir`, as published.
    pub fn category(&self, dir: Direction) -> CategoryId {
        dir.pick(self.published().category)
    }

    /// The app recognised, as published (no lock: for readers that walk
    /// the whole table; ids past [`MAX_PUBLISHED_APP`] read as none).
    pub fn app(&self) -> Option<AppId> {
        self.published().app
    }

    /// The full classification state, locked. Taken by the per-packet path
    /// only while the flow is unsettled; keep the guard briefly.
    pub fn lock(&self) -> MutexGuard<'_, FlowClass> {
        // Valid between any two statements of the classifier: a panic in
        // one packet's inspection must not stop the flow's next packets.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FlowValue for ClassCell {
    fn reset(&self) {
        let mut state = self.lock();
        *state = FlowClass::default();
        self.verdict.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The app travels in the verdict word with the rest, and an id the
    /// word cannot hold reads as none rather than as another app.
    #[test]
    fn the_verdict_word_keeps_the_app() {
        for app in [None, Some(0), Some(217), Some(MAX_PUBLISHED_APP)] {
            let p = Published {
                category: [CategoryId(3), CategoryId(255)],
                app,
                settled: true,
                watch_volume: true,
                watch_media: true,
                generation: u32::MAX,
            };
            assert_eq!(Published::unpack(p.pack()), p);
        }
        let too_far = Published {
            category: [CategoryId(1); 2],
            app: Some(MAX_PUBLISHED_APP + 1),
            settled: false,
            watch_volume: false,
            watch_media: false,
            generation: 7,
        };
        assert_eq!(Published::unpack(too_far.pack()).app, None);
        assert_eq!(Published::unpack(too_far.pack()).generation, 7);
    }
}
