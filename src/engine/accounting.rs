//! What one direction's data-path thread counts per app and per category
//! besides the queue's own counters: packets and bytes by app and
//! category, and the quality of the office's TCP traffic (round trips and
//! retransmitted segments). Plain integers in arrays laid out once per
//! configuration: a packet costs an index and two additions, never an
//! allocation or an atomic; the thread copies them into its snapshot every
//! 100 ms ([`crate::telemetry::Snapshot::accounting`]).
//!
//! Every table follows the configuration the engine runs: categories by
//! index, apps by their position in the catalog. A reload rebuilds the
//! tables and carries each count over by name (category and app), so a
//! reordered catalog or category list never hands one app's count to
//! another; what a removed app or category counted leaves with it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::classify::matcher::AppId;
use crate::config::{CategoryId, Config, Direction};
use crate::shaper::{BucketBounds, BucketHistogram, PacketBytes};

/// Upper bounds (inclusive, nanoseconds) of the TCP round-trip buckets; a
/// last, implicit bucket is +Inf. From 1 ms (a server in the same city)
/// to 2 s (a satellite hop, 600 ms at rest, under a full buffer), finer
/// where the usual terrestrial (5-100 ms) and geostationary (550-900 ms)
/// round trips sit, so a p95 reads within a bucket's width of the truth.
pub const RTT_BUCKET_BOUNDS_NS: [u64; 24] = [
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    15_000_000,
    20_000_000,
    30_000_000,
    40_000_000,
    50_000_000,
    75_000_000,
    100_000_000,
    150_000_000,
    200_000_000,
    300_000_000,
    400_000_000,
    500_000_000,
    600_000_000,
    650_000_000,
    700_000_000,
    800_000_000,
    900_000_000,
    1_000_000_000,
    1_500_000_000,
    2_000_000_000,
];

/// The TCP round-trip buckets: [`RTT_BUCKET_BOUNDS_NS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttBuckets;

impl BucketBounds for RttBuckets {
    const NS: &'static [u64] = &RTT_BUCKET_BOUNDS_NS;
}

/// Round trips in [`RTT_BUCKET_BOUNDS_NS`] buckets, with their sum (the
/// queue-delay histogram's type, other bounds).
pub type RttHistogram = BucketHistogram<RttBuckets, { RTT_BUCKET_BOUNDS_NS.len() + 1 }>;

/// TCP data segments of one category travelling this thread's direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpSegments {
    /// Segments carrying payload (retransmissions included).
    pub data: u64,
    /// Of those, segments that started before the highest sequence number
    /// their flow had already sent ([`crate::wan::retrans`]).
    pub retransmitted: u64,
}

/// One direction's per-app and TCP-quality counters.
#[derive(Debug, Default, PartialEq)]
pub struct Accounting {
    /// Categories of the layout (the row length of `apps`).
    categories: usize,
    /// Packets and bytes by app and category: row 0 is no app recognised
    /// (`unknown`), row `1 + id` app `id` of the catalog; a row has one
    /// cell per category.
    apps: Vec<PacketBytes>,
    /// TCP data segments by category, this direction's.
    segments: Vec<TcpSegments>,
    /// Round trips by [`Direction::index`] (of the traffic they time, see
    /// [`crate::wan::TcpRtt::direction`]), then category. Filled by the
    /// thread that measures them (the download's, which has the meter);
    /// empty on the other.
    rtt: [Vec<RttHistogram>; 2],
}

impl Clone for Accounting {
    fn clone(&self) -> Self {
        Accounting {
            categories: self.categories,
            apps: self.apps.clone(),
            segments: self.segments.clone(),
            rtt: self.rtt.clone(),
        }
    }

    /// Reuses the tables' memory: the data path publishes a copy every
    /// 100 ms and must not allocate for it while the layout stays.
    fn clone_from(&mut self, src: &Self) {
        self.categories = src.categories;
        self.apps.clone_from(&src.apps);
        self.segments.clone_from(&src.segments);
        for (d, s) in self.rtt.iter_mut().zip(&src.rtt) {
            d.clone_from(s);
        }
    }
}

impl Accounting {
    /// Empty tables for `cfg`'s categories and catalog; round trips only
    /// when `measures_rtt` (the thread with the WAN meter).
    pub fn new(cfg: &Config, measures_rtt: bool) -> Self {
        let categories = cfg.category.len();
        let rtt_rows = if measures_rtt { categories } else { 0 };
        Accounting {
            categories,
            apps: vec![PacketBytes::default(); (cfg.catalog.apps.len() + 1) * categories],
            segments: vec![TcpSegments::default(); categories],
            rtt: [
                vec![RttHistogram::default(); rtt_rows],
                vec![RttHistogram::default(); rtt_rows],
            ],
        }
    }

    /// Counts a packet of `bytes` of app `app` (`None`: not recognised)
    /// queued in `category`.
    #[inline]
    pub fn count_app(&mut self, app: Option<AppId>, category: CategoryId, bytes: u64) {
        let row = app.map_or(0, |a| usize::from(a) + 1);
        let cat = category.index();
        if cat >= self.categories {
            return;
        }
        // An id past the catalog (never expected) counts as unknown.
        let cell = match self.apps.get(row * self.categories + cat) {
            Some(_) => row * self.categories + cat,
            None => cat,
        };
        if let Some(c) = self.apps.get_mut(cell) {
            c.add(bytes);
        }
    }

    /// Counts a TCP data segment of `category`, `retransmitted` or new.
    #[inline]
    pub fn count_segment(&mut self, category: CategoryId, retransmitted: bool) {
        if let Some(s) = self.segments.get_mut(category.index()) {
            s.data += 1;
            s.retransmitted += u64::from(retransmitted);
        }
    }

    /// Counts a round trip of `ns` of traffic travelling `dir` in
    /// `category`.
    #[inline]
    pub fn count_rtt(&mut self, dir: Direction, category: CategoryId, ns: u64) {
        if let Some(h) = dir.pick_mut(&mut self.rtt).get_mut(category.index()) {
            h.record(ns);
        }
    }

    /// Packets and bytes by app and category, the non-zero cells only:
    /// (catalog index of the app, `None` for unknown; category index;
    /// counts).
    pub fn apps(&self) -> impl Iterator<Item = (Option<usize>, usize, PacketBytes)> + '_ {
        self.apps
            .chunks(self.categories.max(1))
            .enumerate()
            .flat_map(|(row, cells)| {
                cells
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.packets != 0)
                    .map(move |(cat, c)| (row.checked_sub(1), cat, *c))
            })
    }

    /// TCP data segments by category index, this direction's.
    pub fn segments(&self) -> &[TcpSegments] {
        &self.segments
    }

    /// Round trips of traffic travelling `dir`, by category index (empty
    /// on the thread that does not measure them).
    pub fn rtt(&self, dir: Direction) -> &[RttHistogram] {
        dir.pick_ref(&self.rtt).as_slice()
    }

    /// The same counts laid out for `to`, from tables laid out for
    /// `from`: categories through `origin` (for each category of `to`,
    /// its index in `from`, as [`super::DirectionEngine::category_origin`]
    /// says), apps by name. Runs on a reload, never per packet.
    pub fn relayout(&self, from: &Config, to: &Config, origin: &[Option<usize>]) -> Self {
        let mut out = Accounting::new(to, !self.rtt[0].is_empty());
        let old_row = app_rows(from, to);
        let old_cats = self.categories;
        for (cat, was) in origin.iter().enumerate().take(out.categories) {
            let Some(was) = *was else { continue };
            for (row, old) in old_row.iter().enumerate() {
                if let (Some(old), Some(cell)) = (old, out.apps.get_mut(row * out.categories + cat))
                    && let Some(c) = self.apps.get(old * old_cats + was)
                {
                    *cell = *c;
                }
            }
            if let (Some(s), Some(o)) = (out.segments.get_mut(cat), self.segments.get(was)) {
                *s = *o;
            }
            for (new, old) in out.rtt.iter_mut().zip(&self.rtt) {
                if let (Some(h), Some(o)) = (new.get_mut(cat), old.get(was)) {
                    *h = *o;
                }
            }
        }
        out
    }
}

/// For each row of `to`'s app table, the row of the same app in `from`'s
/// (`unknown` to `unknown`, apps by name).
fn app_rows(from: &Config, to: &Config) -> Vec<Option<usize>> {
    if Arc::ptr_eq(&from.catalog, &to.catalog) {
        return (0..=to.catalog.apps.len()).map(Some).collect();
    }
    let old: HashMap<&str, usize> = from
        .catalog
        .apps
        .iter()
        .enumerate()
        .map(|(i, a)| (a.name.as_str(), i + 1))
        .collect();
    std::iter::once(Some(0))
        .chain(
            to.catalog
                .apps
                .iter()
                .map(|a| old.get(a.name.as_str()).copied()),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data path copies its tables into the snapshot every 100 ms:
    /// while the layout stays, the copy reuses the snapshot's memory.
    #[test]
    fn the_snapshot_copy_reuses_its_tables() {
        let cfg = crate::config::load_str(
            crate::config::EMBEDDED_NAME,
            crate::config::DEFAULT_CONFIG_TOML,
            &crate::config::Env::None,
        )
        .unwrap();
        let mut live = Accounting::new(&cfg, true);
        let mut snap = Accounting::default();
        snap.clone_from(&live);
        let tables = (snap.apps.as_ptr(), snap.rtt[1].as_ptr());
        live.count_app(Some(3), CategoryId(1), 100);
        live.count_rtt(Direction::Download, CategoryId(2), 30_000_000);
        snap.clone_from(&live);
        assert_eq!((snap.apps.as_ptr(), snap.rtt[1].as_ptr()), tables);
        assert_eq!(snap, live);
        assert_eq!(snap.rtt(Direction::Download)[2].count(), 1);
    }

    /// Bounds are inclusive, and what is past the last is counted too.
    #[test]
    fn round_trips_fall_in_their_buckets() {
        let mut h = RttHistogram::default();
        for ns in [1, 1_000_000, 1_000_001, 2_000_000_000, 5_000_000_000] {
            h.record(ns);
        }
        let c = h.cumulative();
        assert_eq!((c[0], c[1]), (2, 3));
        assert_eq!(c[RTT_BUCKET_BOUNDS_NS.len() - 1], 4);
        assert_eq!(c[RTT_BUCKET_BOUNDS_NS.len()], 5);
        assert_eq!(h.count(), 5);
    }
}
