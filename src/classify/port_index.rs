//! Which signatures of a list can match a flow, by its ports: a new flow
//! then evaluates a handful of candidates instead of every signature of the
//! catalog (the scan was a third of the cost of classifying a new flow).
//!
//! The ports 0..=65535 are cut into elementary intervals at every range
//! boundary of the list; each interval knows the signatures that have a
//! port condition covering it. Signatures without a port condition are
//! candidates for every flow. Candidates come out in list order, so "first
//! match wins" is unchanged; the full condition is still evaluated for each.

use crate::config::PortRange;

/// Index of a signature in its list.
pub type SigIndex = u16;

/// Candidate signatures of one list by port.
#[derive(Debug, Clone, Default)]
pub struct PortIndex {
    /// First port of each elementary interval, ascending, starting at 0.
    starts: Vec<u16>,
    /// The signatures whose port conditions cover each interval, ascending.
    sets: Vec<Box<[SigIndex]>>,
    /// Signatures without a port condition, ascending.
    always: Box<[SigIndex]>,
}

impl PortIndex {
    /// Indexes a list whose `i`-th signature has the port ranges
    /// `ranges[i]` (all of its `ports`, `src_ports` and `dst_ports`; empty
    /// when it has no port condition). Signatures beyond `SigIndex::MAX`
    /// are not indexed (catalogs are far smaller).
    pub fn new(ranges: &[Vec<PortRange>]) -> Self {
        let ranges = ranges.get(..usize::from(SigIndex::MAX)).unwrap_or(ranges);
        let mut starts: Vec<u16> = vec![0];
        for r in ranges.iter().flatten() {
            starts.push(r.first);
            if let Some(next) = r.last.checked_add(1) {
                starts.push(next);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        // Every range begins and ends on interval boundaries, so a range
        // covers an interval exactly when it contains the interval's start.
        let sets = starts
            .iter()
            .map(|&start| {
                (0..)
                    .zip(ranges)
                    .filter(|(_, rs)| rs.iter().any(|r| r.contains(start)))
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        let always = (0..)
            .zip(ranges)
            .filter(|(_, rs)| rs.is_empty())
            .map(|(i, _)| i)
            .collect();
        PortIndex {
            starts,
            sets,
            always,
        }
    }

    fn set(&self, port: u16) -> &[SigIndex] {
        let i = self
            .starts
            .partition_point(|&s| s <= port)
            .saturating_sub(1);
        self.sets.get(i).map_or(&[], |s| s)
    }

    /// The first candidate, in list order, for a flow between `src_port`
    /// and `dst_port` for which `accept` is true. Each candidate is offered
    /// once.
    #[inline]
    pub fn find(
        &self,
        src_port: u16,
        dst_port: u16,
        mut accept: impl FnMut(SigIndex) -> bool,
    ) -> Option<SigIndex> {
        let mut lists = [self.set(src_port), self.set(dst_port), &self.always];
        loop {
            // The smallest head of the three sorted lists, then every list
            // past it (the two port sets may share signatures).
            let next = lists.iter().filter_map(|l| l.first().copied()).min()?;
            for l in &mut lists {
                if l.first() == Some(&next) {
                    *l = l.get(1..).unwrap_or_default();
                }
            }
            if accept(next) {
                return Some(next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(first: u16, last: u16) -> PortRange {
        PortRange { first, last }
    }

    /// What `find` must equal: the first signature, in list order, that
    /// has no port condition or covers one of the ports.
    fn linear(
        ranges: &[Vec<PortRange>],
        src: u16,
        dst: u16,
        accept: impl Fn(SigIndex) -> bool,
    ) -> Option<SigIndex> {
        (0..).zip(ranges).find_map(|(i, rs)| {
            let candidate = rs.is_empty() || rs.iter().any(|r| r.contains(src) || r.contains(dst));
            (candidate && accept(i)).then_some(i)
        })
    }

    #[test]
    fn candidates_in_list_order_once_each() {
        let ranges = vec![
            vec![r(443, 443)],
            vec![],
            vec![r(3478, 3481), r(50000, 59999)],
            vec![r(0, 65535)],
            vec![r(443, 443), r(3478, 3478)],
        ];
        let ix = PortIndex::new(&ranges);
        let mut offered = Vec::new();
        assert_eq!(
            ix.find(3478, 443, |i| {
                offered.push(i);
                false
            }),
            None
        );
        assert_eq!(offered, [0, 1, 2, 3, 4]);
        let mut offered = Vec::new();
        ix.find(40000, 65535, |i| {
            offered.push(i);
            false
        });
        assert_eq!(offered, [1, 3]);
        assert_eq!(ix.find(50000, 1, |i| i >= 2), Some(2));
        assert_eq!(ix.find(59999, 1, |i| i >= 2), Some(2));
        assert_eq!(ix.find(60000, 1, |i| i >= 2), Some(3));
    }

    #[test]
    fn an_empty_list_has_no_candidates() {
        let ix = PortIndex::new(&[]);
        assert_eq!(ix.find(1, 2, |_| true), None);
    }

    proptest! {
        #[test]
        fn same_answer_as_a_linear_scan(
            ranges in prop::collection::vec(
                prop::collection::vec((any::<u16>(), 0u16..2000), 0..4), 0..40),
            ports in prop::collection::vec((any::<u16>(), any::<u16>()), 1..20),
            accepted in prop::collection::vec(any::<bool>(), 40),
        ) {
            let ranges: Vec<Vec<PortRange>> = ranges
                .iter()
                .map(|rs| rs.iter().map(|&(f, w)| r(f, f.saturating_add(w))).collect())
                .collect();
            let ix = PortIndex::new(&ranges);
            let accept = |i: SigIndex| accepted.get(usize::from(i)).copied().unwrap_or(false);
            for &(src, dst) in &ports {
                // Also at the edges of the ranges, where an off-by-one hides.
                let edges = ranges.iter().flatten().flat_map(|r| {
                    [r.first, r.last, r.first.wrapping_sub(1), r.last.wrapping_add(1)]
                });
                for (s, d) in std::iter::once((src, dst)).chain(edges.map(|e| (e, dst))) {
                    prop_assert_eq!(ix.find(s, d, accept), linear(&ranges, s, d, accept));
                }
            }
        }
    }
}
