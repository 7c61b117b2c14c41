//! What one shaper (one direction) runs with, resolved from the validated
//! [`Config`] into plain rates and sizes.

use std::time::Duration;

use crate::config::{CategoryId, Config, Direction, Fairness, MAX_CATEGORIES, Rate};

/// The least memory budget: enough for a few hundred full-size packets even
/// on the slowest link.
pub const MIN_MEMORY_LIMIT: u64 = 4 << 20;

/// Default number of hashed flow queues per category (as fq_codel).
pub const DEFAULT_FLOWS_PER_CATEGORY: u32 = 1024;

/// Default DRR quantum between flows of a category: one Ethernet MTU frame.
pub const DEFAULT_QUANTUM: u32 = 1514;

/// Default credit an idle link or category may save up.
pub const DEFAULT_BURST: Duration = Duration::from_millis(1);

/// One category as the shaper of one direction sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryParams {
    /// 0 (served first) ..= 7.
    pub priority: u8,
    /// Share of spare capacity among backlogged categories of equal
    /// priority, counted in bytes (at least 1).
    pub weight: u32,
    /// Guaranteed rate while backlogged (0: none).
    pub min: Rate,
    /// Ceiling, never exceeded.
    pub max: Rate,
    /// CoDel target queue delay.
    pub codel_target: Duration,
    /// CoDel interval.
    pub codel_interval: Duration,
    /// Mark ECN-capable packets CE instead of dropping them.
    pub ecn: bool,
    /// Most bytes this category may hold queued; `None` for the default,
    /// [`ShaperConfig::default_backlog_limit`]. Past it, the category's
    /// fattest flow loses packets (reason `ceiling`), so a category stuck at
    /// its `max` cannot eat the whole memory budget.
    pub backlog_limit: Option<u64>,
}

impl CategoryParams {
    /// A category with CoDel's defaults (5 ms / 100 ms, no ECN) and the
    /// default backlog limit.
    pub fn new(priority: u8, weight: u32, min: Rate, max: Rate) -> Self {
        CategoryParams {
            priority,
            weight,
            min,
            max,
            codel_target: Duration::from_millis(5),
            codel_interval: Duration::from_millis(100),
            ecn: false,
            backlog_limit: None,
        }
    }
}

/// Everything one shaper needs. Built from the configuration with
/// [`ShaperConfig::from_config`], or by hand in tests and simulations.
/// Out-of-range values are clamped when a shaper takes the configuration
/// (see [`ShaperConfig::normalized`]), never rejected: validation belongs to
/// the configuration loader.
#[derive(Debug, Clone, PartialEq)]
pub struct ShaperConfig {
    /// The rate the link is shaped to (wire bytes, overhead included).
    pub rate: Rate,
    /// Bytes added to every packet's length when charging it to the link and
    /// categories; may be negative (a packet is charged at least 1 byte).
    pub overhead: i32,
    /// Credit an idle link or category may save up, so a caller that wakes
    /// up late catches up instead of losing rate.
    pub burst: Duration,
    /// Most bytes queued across all categories; past it, the fattest flow
    /// queue loses packets from its head (reason `overflow`).
    pub memory_limit: u64,
    /// Most packets queued across all categories (bounds per-packet memory
    /// under floods of tiny packets); enforced like `memory_limit`.
    pub packet_limit: u64,
    /// Hashed flow queues per category.
    pub flows_per_category: u32,
    /// DRR quantum between the flows of a category, in bytes; also CoDel's
    /// MTU (a flow holding no more than this is never dropped from).
    pub quantum: u32,
    /// Where packets go whose category does not exist: an out-of-range
    /// [`CategoryId`] on enqueue, or a category a reconfiguration removed.
    pub fallback: CategoryId,
    /// Categories, indexed by [`CategoryId`].
    pub categories: Vec<CategoryParams>,
    /// The queue is after the bottleneck (the download: packets crossed
    /// the ISP's line before qosd saw them), as CAKE's `ingress` mode: a
    /// packet dropped here still used the line, so its bytes are charged
    /// to the link's rate as if sent. Without it, every drop would let
    /// the senders' share of the line grow by what was dropped.
    pub ingress: bool,
    /// Who shares a category's rate: LAN hosts first, then each host's
    /// flows ([`Fairness::Host`]), or flows alone ([`Fairness::Flow`]).
    pub fairness: Fairness,
    /// One LAN host's ceiling across all categories (`shaper.host_max`),
    /// if any.
    pub host_max: Option<Rate>,
}

impl ShaperConfig {
    /// A configuration at `rate` with every default: memory budget
    /// [`ShaperConfig::default_memory_limit`], one packet per 64 bytes of it,
    /// 1024 flows per category, 1514-byte quantum, 1 ms burst, no overhead,
    /// fallback category 0.
    pub fn new(rate: Rate, categories: Vec<CategoryParams>) -> Self {
        let memory_limit = Self::default_memory_limit(rate);
        ShaperConfig {
            rate,
            overhead: 0,
            burst: DEFAULT_BURST,
            memory_limit,
            packet_limit: memory_limit / 64,
            flows_per_category: DEFAULT_FLOWS_PER_CATEGORY,
            quantum: DEFAULT_QUANTUM,
            fallback: CategoryId(0),
            categories,
            ingress: false,
            fairness: Fairness::Host,
            host_max: None,
        }
    }

    /// The shaper for direction `dir` of a validated configuration; the
    /// fallback is the default category.
    pub fn from_config(cfg: &Config, dir: Direction) -> Self {
        let link = &cfg.link;
        let categories = cfg
            .category
            .iter()
            .map(|c| CategoryParams {
                priority: c.priority,
                weight: c.weight,
                min: c.min_rate(dir, link),
                max: c.max_rate(dir, link),
                codel_target: c.codel_target,
                codel_interval: c.codel_interval,
                ecn: c.ecn,
                backlog_limit: None,
            })
            .collect();
        let mut s = ShaperConfig::new(link.rate(dir), categories);
        s.overhead = link.overhead.get(dir);
        s.fallback = cfg.default_category_id();
        s.ingress = dir == Direction::Download;
        s.fairness = cfg.shaper.fairness;
        s.host_max = cfg.shaper.host_max.map(|b| b.resolve(link.rate(dir)));
        s
    }

    /// The same shaper with the link at `rate` instead of `link.*`
    /// (autorate). Guarantees given as shares of the link ("15%") follow
    /// the rate: they cannot promise more than the line carries. Ceilings
    /// given as shares stay shares of `link.*` (or of the rate, when
    /// higher): a ceiling keeps a category from crowding out the others,
    /// and on a line that lost half its capacity the office's calls still
    /// need what they needed.
    pub fn with_link_rate(mut self, cfg: &Config, dir: Direction, rate: Rate) -> Self {
        let at = |r: Rate| {
            let mut link = cfg.link;
            match dir {
                Direction::Upload => link.upload = r,
                Direction::Download => link.download = r,
            }
            link
        };
        let (now, ceiling) = (at(rate), at(rate.max(cfg.link.rate(dir))));
        self.rate = rate;
        // Like a category's ceiling: a share of link.* or of the rate,
        // when higher.
        self.host_max = cfg.shaper.host_max.map(|b| b.resolve(ceiling.rate(dir)));
        for (p, c) in self.categories.iter_mut().zip(&cfg.category) {
            p.min = c.min_rate(dir, &now);
            p.max = c.max_rate(dir, &ceiling);
        }
        self
    }

    /// The larger of 4 MiB and 250 ms at `rate`: a quarter second of queue
    /// is far beyond what CoDel lets stand, so only floods reach it.
    pub fn default_memory_limit(rate: Rate) -> u64 {
        (rate.bytes_per_sec() / 4).max(MIN_MEMORY_LIMIT)
    }

    /// The backlog limit of a category whose ceiling is `max`: 250 ms at
    /// `max`, at least 64 KiB (a burst of ~40 full packets), at most half
    /// the memory budget.
    pub fn default_backlog_limit(&self, max: Rate) -> u64 {
        let half = (self.memory_limit / 2).max(1);
        (max.bytes_per_sec() / 4).max(64 << 10).min(half)
    }

    /// The configuration with every value brought into the range the shaper
    /// works with, defaults resolved: at least one category (a catch-all at
    /// the link rate), at most [`MAX_CATEGORIES`]; rates 1 bit/s ..= 1 Tbit/s;
    /// weights >= 1; priorities <= 7; `min <= max`; limits >= 1.
    pub fn normalized(&self) -> ShaperConfig {
        let mut c = self.clone();
        c.rate = Rate::from_bps(c.rate.bps().clamp(1, crate::config::units::MAX_RATE_BPS));
        c.memory_limit = c.memory_limit.max(1);
        c.packet_limit = c.packet_limit.clamp(1, 1 << 31);
        c.flows_per_category = c.flows_per_category.clamp(1, 1 << 20);
        c.quantum = c.quantum.max(1);
        if c.categories.is_empty() {
            c.categories
                .push(CategoryParams::new(7, 1, Rate::from_bps(0), c.rate));
        }
        c.categories.truncate(MAX_CATEGORIES);
        if c.fallback.index() >= c.categories.len() {
            c.fallback = CategoryId(0);
        }
        let defaults: Vec<u64> = c
            .categories
            .iter()
            .map(|p| c.default_backlog_limit(p.max))
            .collect();
        for (p, default) in c.categories.iter_mut().zip(defaults) {
            p.priority = p.priority.min(7);
            p.weight = p.weight.clamp(1, 1_000_000);
            let max = p.max.bps().clamp(1, crate::config::units::MAX_RATE_BPS);
            p.max = Rate::from_bps(max);
            p.min = Rate::from_bps(p.min.bps().min(max));
            p.codel_interval = p.codel_interval.max(Duration::from_micros(1));
            p.backlog_limit = Some(p.backlog_limit.unwrap_or(default).max(1));
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, load_str};

    #[test]
    fn from_the_default_configuration() {
        let cfg = load_str(
            crate::config::EMBEDDED_NAME,
            crate::config::DEFAULT_CONFIG_TOML,
            &Env::None,
        )
        .unwrap();
        let up = ShaperConfig::from_config(&cfg, Direction::Upload);
        assert_eq!(up.rate, Rate::from_bps(18_000_000));
        assert_eq!(up.categories.len(), cfg.category.len());
        assert_eq!(up.fallback, cfg.default_category_id());
        let voice = cfg.category_id("voice").unwrap();
        let v = &up.categories[voice.index()];
        assert_eq!(v.priority, 0);
        assert_eq!(v.min, Rate::from_bps(2_700_000)); // 15%
        assert_eq!(v.max, Rate::from_bps(7_200_000)); // 40%
        assert_eq!(v.codel_target, Duration::from_millis(5));
        assert_eq!(up.memory_limit, MIN_MEMORY_LIMIT);
        let down = ShaperConfig::from_config(&cfg, Direction::Download);
        assert_eq!(down.rate, Rate::from_bps(46_000_000));
    }

    #[test]
    fn memory_limit_scales_with_fast_links() {
        let c = ShaperConfig::new(Rate::from_bps(1_000_000_000), vec![]);
        assert_eq!(c.memory_limit, 31_250_000);
        let n = c.normalized();
        assert_eq!(n.categories.len(), 1);
        assert_eq!(
            n.categories[0].backlog_limit,
            Some(31_250_000 / 2),
            "a category at the full link holds at most half the budget"
        );
    }

    #[test]
    fn normalization_clamps() {
        let mut c = ShaperConfig::new(
            Rate::from_bps(0),
            vec![CategoryParams::new(
                9,
                0,
                Rate::from_bps(5_000),
                Rate::from_bps(1_000),
            )],
        );
        c.fallback = CategoryId(7);
        let n = c.normalized();
        assert_eq!(n.rate, Rate::from_bps(1));
        let p = &n.categories[0];
        assert_eq!((p.priority, p.weight), (7, 1));
        assert_eq!(p.min, Rate::from_bps(1_000));
        assert_eq!(p.backlog_limit, Some(64 << 10));
        assert_eq!(n.fallback, CategoryId(0));
    }
}
