//! Which real-time app each LAN endpoint (address and UDP port) was
//! last seen with. A call's client binds one local port and uses it for
//! its STUN checks with the service and for the media that follows,
//! often straight to the other party (peer to peer) or to a relay that
//! nothing names: such a media flow inherits the app, and the category,
//! of the flow that used the same local endpoint just before.
//!
//! A direct-mapped table of atomic words: fixed memory (32 KiB), no lock,
//! no allocation; a newer endpoint overwrites an older one in its slot,
//! and entries lapse after [`HOLD_SECS`]. Rebuilt with the classifier on
//! a reload (app ids change with the catalog).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use super::matcher::AppId;
use crate::config::CategoryId;
use crate::time::Instant;

/// Slots in the table (a power of two).
const SLOTS: usize = 4096;
/// How long an endpoint is remembered after its flow was decided: a call
/// starts its media within seconds of its checks.
pub const HOLD_SECS: u64 = 120;
/// The expiry field's width: times are kept modulo 2^18 s (three days),
/// far longer than [`HOLD_SECS`].
const EXPIRY_BITS: u32 = 18;
const EXPIRY_MASK: u64 = (1 << EXPIRY_BITS) - 1;
/// The widest app id a slot holds (13 bits, less the code for none).
const MAX_APP: AppId = (1 << 13) - 2;

/// The LAN endpoints' apps (see the module doc).
pub struct EndpointApps {
    slots: Box<[AtomicU64]>,
    hasher: foldhash::fast::FixedState,
}

impl std::fmt::Debug for EndpointApps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointApps").finish_non_exhaustive()
    }
}

impl Default for EndpointApps {
    fn default() -> Self {
        EndpointApps {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: foldhash::fast::FixedState::with_seed(0x716f_7364),
        }
    }
}

/// What a slot holds, packed: bits 0-12 the app plus one (0: empty),
/// bits 13-20 the category, bits 21-38 the expiry second (modulo 2^18),
/// bits 39-63 a tag of the endpoint's hash.
fn pack(tag: u64, app: AppId, category: CategoryId, expiry: u64) -> u64 {
    (u64::from(app) + 1) | u64::from(category.0) << 13 | (expiry & EXPIRY_MASK) << 21 | tag << 39
}

impl EndpointApps {
    /// The slot index and tag of an endpoint.
    fn place(&self, addr: [u8; 16], port: u16) -> (usize, u64) {
        let h = self.hasher.hash_one((addr, port));
        ((h as usize) & (SLOTS - 1), h >> 39)
    }

    /// Remembers that LAN endpoint `addr`:`port` was used by `app`, in
    /// `category`, at `now`.
    pub fn remember(
        &self,
        addr: [u8; 16],
        port: u16,
        app: AppId,
        category: CategoryId,
        now: Instant,
    ) {
        if app > MAX_APP {
            return;
        }
        let (i, tag) = self.place(addr, port);
        let expiry = now.as_nanos() / 1_000_000_000 + HOLD_SECS;
        if let Some(slot) = self.slots.get(i) {
            slot.store(pack(tag, app, category, expiry), Ordering::Relaxed);
        }
    }

    /// The app and category LAN endpoint `addr`:`port` was last used by,
    /// if that was less than [`HOLD_SECS`] before `now`.
    pub fn recall(&self, addr: [u8; 16], port: u16, now: Instant) -> Option<(AppId, CategoryId)> {
        let (i, tag) = self.place(addr, port);
        let v = self.slots.get(i)?.load(Ordering::Relaxed);
        let app = (v & 0x1fff) as AppId;
        if v >> 39 != tag || app == 0 {
            return None;
        }
        let expiry = (v >> 21) & EXPIRY_MASK;
        let now_s = now.as_nanos() / 1_000_000_000;
        // Seconds left, modulo the field: more than the hold time means
        // the expiry is behind us.
        let left = expiry.wrapping_sub(now_s) & EXPIRY_MASK;
        if left > HOLD_SECS {
            return None;
        }
        Some((app - 1, CategoryId((v >> 13) as u8)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Instant {
        Instant::from_nanos(s * 1_000_000_000)
    }

    #[test]
    fn an_endpoint_is_recalled_until_it_lapses() {
        let t = EndpointApps::default();
        let pc = std::net::Ipv4Addr::new(192, 168, 1, 10)
            .to_ipv6_mapped()
            .octets();
        t.remember(pc, 41000, 17, CategoryId(2), at(1000));
        assert_eq!(t.recall(pc, 41000, at(1000)), Some((17, CategoryId(2))));
        assert_eq!(
            t.recall(pc, 41000, at(1000 + HOLD_SECS)),
            Some((17, CategoryId(2)))
        );
        assert_eq!(t.recall(pc, 41000, at(1001 + HOLD_SECS)), None);
        // Another port, or another address: nothing.
        assert_eq!(t.recall(pc, 41001, at(1000)), None);
        let other = std::net::Ipv4Addr::new(192, 168, 1, 11)
            .to_ipv6_mapped()
            .octets();
        assert_eq!(t.recall(other, 41000, at(1000)), None);
        // Remembered again: held again; the expiry wraps with the field.
        let late = EXPIRY_MASK * 3 + 5;
        t.remember(pc, 41000, 0, CategoryId(1), at(late));
        assert_eq!(t.recall(pc, 41000, at(late + 1)), Some((0, CategoryId(1))));
        assert_eq!(t.recall(pc, 41000, at(late + HOLD_SECS + 1)), None);
        // Ids the slot cannot hold are not stored.
        t.remember(pc, 9, MAX_APP + 1, CategoryId(1), at(5));
        assert_eq!(t.recall(pc, 9, at(5)), None);
    }
}
