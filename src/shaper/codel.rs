//! CoDel (RFC 8289), as Linux's `codel_impl.h` runs it per flow inside
//! fq_codel, with the queue abstracted so the state machine is tested alone.

/// CoDel's parameters for one category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CodelParams {
    /// Acceptable standing queue delay (ns).
    pub target: u64,
    /// Window over which the delay must stay above target before dropping (ns).
    pub interval: u64,
    /// A queue holding at most this many bytes is never dropped from: one
    /// packet cannot be a standing queue (RFC 8289 "maxpacket").
    pub mtu: u64,
    /// Mark ECN-capable packets instead of dropping them.
    pub ecn: bool,
}

/// Per-queue CoDel state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Codel {
    /// When the delay, above target since, will have been so for an interval;
    /// 0 while below target (never a real deadline: interval > 0).
    first_above_time: u64,
    /// When to drop next while dropping.
    drop_next: u64,
    /// Drops in the current dropping state.
    count: u32,
    /// `count` when the last dropping state ended.
    lastcount: u32,
    dropping: bool,
}

/// What CoDel needs from the queue it manages.
pub(crate) trait CodelQueue {
    /// A queued packet.
    type Item;
    /// Removes the head packet; gives it with its sojourn time (ns) and the
    /// bytes left in the queue after it.
    fn pop(&mut self) -> Option<(Self::Item, u64, u64)>;
    /// Disposes of a packet CoDel dropped.
    fn drop_item(&mut self, item: Self::Item);
    /// Marks `item` CE instead of dropping it; false if it cannot be marked.
    fn mark_ce(&mut self, item: &mut Self::Item) -> bool;
}

/// `t + interval / sqrt(count)`, in integers.
#[inline]
pub(crate) fn control_law(t: u64, interval: u64, count: u32) -> u64 {
    // sqrt(count << 32) is sqrt(count) << 16: 16 fractional bits of precision.
    let root = (u64::from(count.max(1)) << 32).isqrt();
    let step = u128::from(interval) * (1u128 << 16) / u128::from(root.max(1));
    t.saturating_add(u64::try_from(step).unwrap_or(u64::MAX))
}

impl Codel {
    /// The idle state (what `Default` gives, usable in constants).
    pub(crate) const ZERO: Codel = Codel {
        first_above_time: 0,
        drop_next: 0,
        count: 0,
        lastcount: 0,
        dropping: false,
    };

    fn should_drop(&mut self, head: Option<(u64, u64)>, now: u64, p: &CodelParams) -> bool {
        let Some((sojourn, left)) = head else {
            self.first_above_time = 0;
            return false;
        };
        if sojourn < p.target || left <= p.mtu {
            self.first_above_time = 0;
            return false;
        }
        if self.first_above_time == 0 {
            self.first_above_time = now.saturating_add(p.interval);
            false
        } else {
            now > self.first_above_time
        }
    }

    /// Dequeues the next packet to send from `q`, dropping (or marking) per
    /// CoDel on the way; `None` once `q` is empty.
    pub(crate) fn dequeue<Q: CodelQueue>(
        &mut self,
        q: &mut Q,
        now: u64,
        p: &CodelParams,
    ) -> Option<Q::Item> {
        let Some((first, sojourn, left)) = q.pop() else {
            self.dropping = false;
            self.first_above_time = 0;
            return None;
        };
        let mut item = first;
        let drop = self.should_drop(Some((sojourn, left)), now, p);
        if self.dropping {
            if !drop {
                self.dropping = false;
            } else if now >= self.drop_next {
                while self.dropping && now >= self.drop_next {
                    self.count = self.count.saturating_add(1);
                    if p.ecn && q.mark_ce(&mut item) {
                        self.drop_next = control_law(self.drop_next, p.interval, self.count);
                        return Some(item);
                    }
                    q.drop_item(item);
                    match q.pop() {
                        None => {
                            self.dropping = false;
                            self.first_above_time = 0;
                            return None;
                        }
                        Some((next, sojourn, left)) => {
                            item = next;
                            if self.should_drop(Some((sojourn, left)), now, p) {
                                self.drop_next =
                                    control_law(self.drop_next, p.interval, self.count);
                            } else {
                                self.dropping = false;
                            }
                        }
                    }
                }
            }
        } else if drop {
            if !(p.ecn && q.mark_ce(&mut item)) {
                q.drop_item(item);
                match q.pop() {
                    None => {
                        self.first_above_time = 0;
                        // Still enter the dropping state: the queue was
                        // standing until this very packet.
                        self.enter_dropping(now, p);
                        return None;
                    }
                    Some((next, sojourn, left)) => {
                        item = next;
                        // Linux evaluates (and discards) this to keep
                        // first_above_time current.
                        let _ = self.should_drop(Some((sojourn, left)), now, p);
                    }
                }
            }
            self.enter_dropping(now, p);
        }
        Some(item)
    }

    fn enter_dropping(&mut self, now: u64, p: &CodelParams) {
        self.dropping = true;
        // If the queue went bad again soon after the last dropping state,
        // resume near the drop rate that controlled it then.
        let delta = self.count.wrapping_sub(self.lastcount);
        self.count =
            if delta > 1 && now.saturating_sub(self.drop_next) < p.interval.saturating_mul(16) {
                delta
            } else {
                1
            };
        self.lastcount = self.count;
        self.drop_next = control_law(now, p.interval, self.count);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A queue of (enqueue time, bytes, ecn-capable, marked) at one instant.
    struct Q {
        items: VecDeque<(u64, u64, bool, bool)>,
        now: u64,
        dropped: u32,
        marked: u32,
    }

    impl CodelQueue for Q {
        type Item = (u64, u64, bool, bool);
        fn pop(&mut self) -> Option<(Self::Item, u64, u64)> {
            let it = self.items.pop_front()?;
            let left = self.items.iter().map(|i| i.1).sum();
            Some((it, self.now - it.0, left))
        }
        fn drop_item(&mut self, _item: Self::Item) {
            self.dropped += 1;
        }
        fn mark_ce(&mut self, item: &mut Self::Item) -> bool {
            if item.2 {
                item.3 = true;
                self.marked += 1;
            }
            item.2
        }
    }

    const P: CodelParams = CodelParams {
        target: 5_000_000,
        interval: 100_000_000,
        mtu: 1514,
        ecn: false,
    };

    #[test]
    fn control_law_is_interval_over_sqrt_count() {
        assert_eq!(control_law(0, 100_000_000, 1), 100_000_000);
        assert_eq!(control_law(0, 100_000_000, 4), 50_000_000);
        let c2 = control_law(0, 100_000_000, 2);
        assert!(c2.abs_diff(70_710_678) < 2_000, "{c2}");
    }

    /// A standing queue (every packet waited 50 ms) at one packet per ms:
    /// no drop during the first interval, then drops at a rising rate.
    fn standing_queue(ecn: bool, capable: bool) -> (Vec<u64>, Q) {
        let p = CodelParams { ecn, ..P };
        let mut c = Codel::default();
        let mut q = Q {
            items: VecDeque::new(),
            now: 0,
            dropped: 0,
            marked: 0,
        };
        let mut events = Vec::new();
        let step = 1_000_000;
        let mut last = (0, 0);
        for i in 0..400u64 {
            let now = 50_000_000 + i * step;
            q.now = now;
            // Keep 50 packets of 1000 bytes queued, each 50 ms old at the head.
            while q.items.len() < 51 {
                let k = q.items.len() as u64;
                q.items
                    .push_back((now - 50_000_000 + k * step, 1000, capable, false));
            }
            let out = c.dequeue(&mut q, now, &p);
            assert!(out.is_some());
            if (q.dropped, q.marked) != last {
                events.push(now);
                last = (q.dropped, q.marked);
            }
        }
        (events, q)
    }

    #[test]
    fn drops_after_an_interval_above_target_then_faster() {
        let (drops, q) = standing_queue(false, true);
        assert_eq!(q.marked, 0);
        // First drop one interval after the delay was first seen above target.
        let first = drops[0] - 50_000_000;
        assert!((100_000_000..=102_000_000).contains(&first), "{first}");
        // Spacing shrinks like interval/sqrt(count).
        let gaps: Vec<u64> = drops.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.len() >= 4, "{gaps:?}");
        for (gap, want) in gaps
            .iter()
            .zip([100_000_000, 70_710_678, 57_735_027, 50_000_000])
        {
            assert!(gap.abs_diff(want) <= 1_000_000, "{gaps:?}");
        }
    }

    #[test]
    fn marks_instead_of_dropping_when_ecn() {
        let (marks, q) = standing_queue(true, true);
        assert_eq!(q.dropped, 0);
        assert_eq!(q.marked as usize, marks.len());
        assert!(q.marked >= 4);
        // Not ECN-capable: dropped even with ecn on.
        let (_, q) = standing_queue(true, false);
        assert!(q.dropped >= 4);
        assert_eq!(q.marked, 0);
    }

    #[test]
    fn never_drops_below_target_or_a_single_packet() {
        let mut c = Codel::default();
        let mut q = Q {
            items: VecDeque::new(),
            now: 0,
            dropped: 0,
            marked: 0,
        };
        for i in 0..10_000u64 {
            let now = i * 1_000_000;
            q.now = now;
            // 4 ms old: below target.
            q.items
                .push_back((now - now.min(4_000_000), 1500, false, false));
            q.items
                .push_back((now - now.min(4_000_000), 1500, false, false));
            // One very old packet alone in the queue.
            c.dequeue(&mut q, now, &P);
            c.dequeue(&mut q, now, &P);
        }
        for i in 0..10_000u64 {
            let now = 1_000_000_000_000 + i * 1_000_000;
            q.now = now;
            q.items.push_back((0, 1514, false, false));
            c.dequeue(&mut q, now, &P);
        }
        assert_eq!(q.dropped, 0);
    }
}
