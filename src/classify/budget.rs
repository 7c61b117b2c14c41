//! The memory budget that all flows' inspection state shares
//! (`classify.dpi_memory`).
//!
//! Any LAN host can open flows whose first packets start something that
//! never completes (a ClientHello, a QUIC Initial, a DNS answer over TCP):
//! each such flow would keep its partial state until it expires. So every
//! piece of per-flow classifier state is taken from one [`DpiBudget`],
//! shared by both data-path threads, *before* it is allocated, and given
//! back when it is dropped (the flow settles, is evicted or expires). Past
//! the budget, state is refused: the flow is inspected one packet at a
//! time with nothing kept, and the refusal is counted.
//!
//! Only pending flows reserve (a handful at a time in a quiet office), so
//! an atomic read-modify-write there is cheap; settled flows never touch
//! the budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a reservation holds memory for (the `kind` label of
/// `qosd_dpi_refusals_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A pending flow's inspection state itself (parser flags, media
    /// trackers).
    Flow,
    /// The start of a TCP stream: a ClientHello or HTTP request headers
    /// split over segments, or the headers of the HTTP response to it.
    Tls,
    /// QUIC Initial reassembly: keys and the CRYPTO stream.
    Quic,
    /// An incomplete DNS message from a server over TCP.
    Dns,
}

impl Holder {
    /// Every [`Holder::as_str`], in [`Holder::index`] order.
    pub const KINDS: [&'static str; 4] = ["flow", "tls", "quic", "dns"];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Holder::Flow => "flow",
            Holder::Tls => "tls",
            Holder::Quic => "quic",
            Holder::Dns => "dns",
        }
    }

    /// Index in [`Holder::KINDS`] (and in per-kind counter arrays).
    pub fn index(self) -> usize {
        match self {
            Holder::Flow => 0,
            Holder::Tls => 1,
            Holder::Quic => 2,
            Holder::Dns => 3,
        }
    }
}

/// The kinds of state refused while handling one packet (a set of
/// [`Holder`]s, one bit each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Refusals(u8);

impl Refusals {
    /// Adds `h`.
    pub fn add(&mut self, h: Holder) {
        self.0 |= 1 << h.index();
    }

    /// Adds every kind in `other`.
    pub fn merge(&mut self, other: Refusals) {
        self.0 |= other.0;
    }

    /// True when `h` was refused.
    pub fn contains(self, h: Holder) -> bool {
        self.0 & (1 << h.index()) != 0
    }

    /// True when nothing was refused.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The [`Holder::index`] of each kind refused.
    pub fn indices(self) -> impl Iterator<Item = usize> {
        (0..Holder::KINDS.len()).filter(move |i| self.0 & (1 << i) != 0)
    }
}

/// Bytes that flows' inspection state may hold together, and how many it
/// holds now.
#[derive(Debug)]
pub struct DpiBudget {
    limit: AtomicUsize,
    used: AtomicUsize,
}

impl DpiBudget {
    /// A budget of `limit` bytes, none in use.
    pub fn new(limit: u64) -> Self {
        DpiBudget {
            limit: AtomicUsize::new(usize::try_from(limit).unwrap_or(usize::MAX)),
            used: AtomicUsize::new(0),
        }
    }

    /// Changes the limit (a reload). State held beyond a lowered limit
    /// stays until its flows settle or go; nothing new is granted until
    /// the use is back under it.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(
            usize::try_from(limit).unwrap_or(usize::MAX),
            Ordering::Relaxed,
        );
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes if they fit under the limit. A compare-and-swap
    /// loop, so that two threads can never together go past the limit.
    fn take(&self, n: usize) -> bool {
        let limit = self.limit();
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    /// Gives back `n` bytes taken before.
    fn give_back(&self, n: usize) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// Bytes of a [`DpiBudget`] held by one flow's state; given back when
/// dropped, so every way a flow's state can go (settled, evicted, expired,
/// replaced) returns its memory.
#[derive(Debug)]
pub struct Reservation {
    /// `None`: state kept for one packet only, which may not grow.
    budget: Option<Arc<DpiBudget>>,
    bytes: usize,
}

impl Reservation {
    /// Reserves `bytes` from `budget`; `None` when they do not fit.
    pub fn new(budget: &Arc<DpiBudget>, bytes: usize) -> Option<Self> {
        budget.take(bytes).then(|| Reservation {
            budget: Some(Arc::clone(budget)),
            bytes,
        })
    }

    /// A reservation of nothing that can never grow: for state that lives
    /// on the stack for one packet because the budget refused to keep it.
    pub fn none() -> Self {
        Reservation {
            budget: None,
            bytes: 0,
        }
    }

    /// True when this reservation is from a budget (not [`Reservation::none`]).
    pub fn is_kept(&self) -> bool {
        self.budget.is_some()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Reserves `n` more bytes; false (nothing reserved) when they do not
    /// fit.
    pub fn grow(&mut self, n: usize) -> bool {
        match &self.budget {
            Some(b) if b.take(n) => {
                self.bytes += n;
                true
            }
            _ => n == 0,
        }
    }

    /// Adds `n` bytes already allocated, even past the limit: only for an
    /// allocator's rounding of a size that was reserved.
    fn force(&mut self, n: usize) {
        if n > 0
            && let Some(b) = &self.budget
        {
            b.used.fetch_add(n, Ordering::Relaxed);
            self.bytes += n;
        }
    }

    /// Gives back `n` of the bytes held.
    pub fn shrink(&mut self, n: usize) {
        let n = n.min(self.bytes);
        if let Some(b) = &self.budget {
            b.give_back(n);
        }
        self.bytes -= n;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.give_back(self.bytes);
        }
    }
}

/// Makes room in `buf` for `additional` more bytes, after reserving from
/// `res` whatever capacity that adds. Grows to exactly the length needed
/// (a buffer here holds one message or hello start, never more), so the
/// reservation matches the allocation. False, and `buf` unchanged, when
/// the budget refuses.
pub fn reserve_exact(buf: &mut Vec<u8>, additional: usize, res: &mut Reservation) -> bool {
    let need = buf.len().saturating_add(additional);
    let before = buf.capacity();
    if need <= before {
        return true;
    }
    if !res.grow(need - before) {
        return false;
    }
    buf.reserve_exact(additional);
    // `reserve_exact` may round up (not the standard allocator for bytes):
    // account what was allocated, even a few bytes past the limit.
    res.force(buf.capacity().saturating_sub(need));
    true
}

/// Appends `data` to `buf`, reserving the capacity that needs from `res`
/// first ([`reserve_exact`]). False, and nothing appended, when the budget
/// refuses.
pub fn extend_reserved(buf: &mut Vec<u8>, data: &[u8], res: &mut Reservation) -> bool {
    if !reserve_exact(buf, data.len(), res) {
        return false;
    }
    buf.extend_from_slice(data);
    true
}

/// Drops `buf` (its allocation, not only its contents) and gives its
/// capacity back to `res`.
pub fn free(buf: &mut Option<Vec<u8>>, res: &mut Reservation) {
    if let Some(b) = buf.take() {
        res.shrink(b.capacity());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_limit_and_give_back_on_drop() {
        let b = Arc::new(DpiBudget::new(1000));
        let mut r1 = Reservation::new(&b, 600).unwrap();
        assert!(Reservation::new(&b, 401).is_none());
        assert!(!r1.grow(401));
        assert_eq!(b.used(), 600);
        assert!(r1.grow(400));
        assert_eq!(b.used(), 1000);
        r1.shrink(300);
        assert_eq!((b.used(), r1.bytes()), (700, 700));
        let r2 = Reservation::new(&b, 300).unwrap();
        drop(r1);
        assert_eq!(b.used(), 300);
        drop(r2);
        assert_eq!(b.used(), 0);
        // Lowering the limit refuses new state, keeps what is held.
        let r3 = Reservation::new(&b, 800).unwrap();
        b.set_limit(500);
        assert!(Reservation::new(&b, 1).is_none());
        drop(r3);
        assert!(Reservation::new(&b, 500).is_some());
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_none_reservation_never_grows() {
        let mut r = Reservation::none();
        assert!(!r.is_kept());
        assert!(!r.grow(1));
        assert!(r.grow(0));
        let mut buf = Vec::new();
        assert!(!extend_reserved(&mut buf, b"abc", &mut r));
        assert_eq!(buf.capacity(), 0);
    }

    #[test]
    fn buffers_reserve_their_capacity_and_free_it() {
        let b = Arc::new(DpiBudget::new(100));
        let mut r = Reservation::new(&b, 10).unwrap();
        let mut buf = Some(Vec::new());
        let v = buf.as_mut().unwrap();
        assert!(extend_reserved(v, &[1; 40], &mut r));
        assert!(extend_reserved(v, &[2; 50], &mut r));
        assert_eq!(v.len(), 90);
        assert_eq!(b.used(), 10 + v.capacity());
        assert!(!extend_reserved(v, &[3; 1], &mut r), "over the limit");
        assert_eq!(v.len(), 90);
        free(&mut buf, &mut r);
        assert!(buf.is_none());
        assert_eq!(b.used(), 10);
    }

    #[test]
    fn two_threads_never_overshoot() {
        let b = Arc::new(DpiBudget::new(10_000));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    for _ in 0..10_000 {
                        if let Some(r) = Reservation::new(&b, 7) {
                            assert!(b.used() <= 10_000);
                            held.push(r);
                        }
                        if held.len() > 500 {
                            held.truncate(100);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(b.used(), 0);
    }
}
