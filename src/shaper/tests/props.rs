//! Properties over random configurations and traffic.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use super::*;

/// Deterministic by default (a fixed seed), so `cargo test` gives the
/// same verdict every run; `PROPTEST_RNG_SEED` / `PROPTEST_CASES` explore
/// further. No regression files are written into the source tree.
fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(0x0051_05d5);
    }
    c.failure_persistence = None;
    c
}

/// Random categories on a random link. Mins add up to at most 95% of the
/// link (the configuration validator's rule is 100%).
fn arb_config(max_cats: usize) -> impl Strategy<Value = ShaperConfig> {
    let cat = (
        0u8..4,        // priority
        1u32..=100,    // weight
        0u64..=30,     // min, % of link
        0u64..=100,    // max above min, % of the rest
        any::<bool>(), // ecn
        1u64..20,      // codel target ms
        50u64..200,    // codel interval ms
    );
    (
        prop::sample::select(vec![2_000_000u64, 10_000_000, 50_000_000]),
        prop::collection::vec(cat, 1..=max_cats),
        -20i32..40,
    )
        .prop_map(|(rate, cats, overhead)| {
            let sum: u64 = cats.iter().map(|c| c.2).sum();
            let scale = if sum > 95 { 95.0 / sum as f64 } else { 1.0 };
            let categories = cats
                .into_iter()
                .map(|(prio, weight, min_pct, max_pct, ecn, target, interval)| {
                    let min = (rate as f64 * min_pct as f64 * scale / 100.0) as u64;
                    // Sometimes min == max: a fixed rate.
                    let max = if max_pct < 10 && min > 0 {
                        min
                    } else {
                        min + (rate - min) * max_pct.max(5) / 100
                    };
                    let mut c =
                        CategoryParams::new(prio, weight, Rate::from_bps(min), Rate::from_bps(max));
                    c.ecn = ecn;
                    c.codel_target = Duration::from_millis(target);
                    c.codel_interval = Duration::from_millis(interval);
                    c
                })
                .collect();
            let mut cfg = ShaperConfig::new(Rate::from_bps(rate), categories);
            cfg.overhead = overhead;
            cfg
        })
}

/// One arrival: gap since the previous one (us), category (may not exist),
/// flow, length, ECN-capable.
type Arrival = (u64, u8, u32, usize, bool);

fn arb_arrivals() -> impl Strategy<Value = Vec<Arrival>> {
    prop::collection::vec(
        (
            prop_oneof![3 => 0u64..200, 1 => 0u64..20_000],
            0u8..8,
            0u32..12,
            prop_oneof![1 => 40usize..200, 2 => 1000usize..1500],
            any::<bool>(),
        ),
        1..800,
    )
}

/// Checks every invariant of the shaper against what the test knows is
/// queued, after each operation.
struct Checker {
    outstanding: HashSet<u64>,
    /// Per (category asked, flow): ids in arrival order not yet out.
    order: HashMap<(u8, u32), std::collections::VecDeque<u64>>,
    key_of: HashMap<u64, (u8, u32)>,
    drained: [u64; DropReason::ALL.len()],
    /// Drops counted by categories a reconfiguration removed.
    archived: [u64; DropReason::ALL.len()],
    sent: u64,
    dropped: u64,
}

impl Checker {
    fn new() -> Self {
        Checker {
            outstanding: HashSet::new(),
            order: HashMap::new(),
            key_of: HashMap::new(),
            drained: [0; DropReason::ALL.len()],
            archived: [0; DropReason::ALL.len()],
            sent: 0,
            dropped: 0,
        }
    }

    fn out(&mut self, id: u64, sent: bool) {
        assert!(
            self.outstanding.remove(&id),
            "packet {id} out twice or never in"
        );
        let key = self.key_of[&id];
        let q = self.order.get_mut(&key).unwrap();
        if sent {
            // A flow's packets leave in order (drops may skip some).
            let pos = q.iter().position(|&x| x == id).unwrap();
            assert_eq!(
                pos,
                0,
                "flow {key:?} reordered: {id} before {:?}",
                q.front()
            );
        }
        q.retain(|&x| x != id);
    }

    fn drain(&mut self, s: &mut Shaper<Pkt>) {
        let mut got = Vec::new();
        s.drain_dropped(|p, r| got.push((p.id, r)));
        for (id, r) in got {
            self.out(id, false);
            self.dropped += 1;
            self.drained[DropReason::ALL.iter().position(|&x| x == r).unwrap()] += 1;
        }
    }

    fn check(&self, s: &Shaper<Pkt>) {
        let c = s.counters();
        for (i, ctr) in c.iter().enumerate() {
            assert!(ctr.is_conserved(), "category {i}: {ctr:?}");
        }
        let backlog = c
            .iter()
            .fold(PacketBytes::default(), |a, x| a.plus(x.backlog));
        assert_eq!(backlog, s.backlog());
        assert_eq!(backlog.packets, self.outstanding.len() as u64);
        for (k, reason) in DropReason::ALL.iter().enumerate() {
            let counted: u64 = c.iter().map(|x| x.dropped(*reason).packets).sum();
            assert_eq!(counted + self.archived[k], self.drained[k], "{reason:?}");
        }
        assert_eq!(s.next_wakeup().is_none(), s.is_empty());
    }
}

/// Dequeues everything due up to `until` (all of it if `until` is NEVER).
fn serve(s: &mut Shaper<Pkt>, ck: &mut Checker, until: u64) {
    while let Some(w) = s.next_wakeup() {
        if w.as_nanos() > until {
            break;
        }
        while let Some(p) = s.dequeue(w) {
            // CoDel's drops on the way left the queue before `p`.
            ck.drain(s);
            ck.out(p.id, true);
            ck.sent += 1;
            ck.check(s);
        }
        ck.drain(s);
        ck.check(s);
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Every packet is sent or dropped with a reason, counters conserve at
    /// every step, flows stay in order, budgets hold, and a
    /// reconfiguration half way (to any other configuration, fewer or more
    /// categories) loses nothing.
    #[test]
    fn every_packet_is_sent_or_counted_dropped(
        cfg in arb_config(6),
        cfg2 in arb_config(6),
        reconf in any::<bool>(),
        memory in prop::sample::select(vec![8_000u64, 60_000, 1 << 22]),
        flows in prop::sample::select(vec![1u32, 4, 1024]),
        arrivals in arb_arrivals(),
    ) {
        let mut cfg = cfg;
        cfg.memory_limit = memory;
        cfg.flows_per_category = flows;
        let mut s: Shaper<Pkt> = Shaper::new(&cfg);
        let mut ck = Checker::new();
        let mut now = 0u64;
        let half = arrivals.len() / 2;
        for (i, (gap, cat, flow, len, ect)) in arrivals.into_iter().enumerate() {
            now += gap * 1_000;
            serve(&mut s, &mut ck, now);
            if reconf && i == half {
                let before = s.backlog();
                for c in s.counters().iter().skip(cfg2.categories.len()) {
                    for (k, r) in DropReason::ALL.iter().enumerate() {
                        ck.archived[k] += c.dropped(*r).packets;
                    }
                }
                s.reconfigure(&cfg2);
                prop_assert_eq!(s.backlog(), before);
                ck.check(&s);
            }
            let id = i as u64;
            // Order is promised per flow queue: the category the packet
            // really lands in, and its flow.
            let c = s.config();
            let ci = if usize::from(cat) < c.categories.len() { cat } else { c.fallback.0 };
            ck.outstanding.insert(id);
            ck.key_of.insert(id, (ci, flow));
            ck.order.entry((ci, flow)).or_default().push_back(id);
            s.enqueue(
                // A flow's host never changes; a few hosts share the flows.
                Pkt { id, len, src: 0, enq: now, ect, ce: false, host: flow % 3 },
                CategoryId(cat),
                flow,
                Instant::from_nanos(now),
            );
            ck.drain(&mut s);
            ck.check(&s);
            let c = s.config();
            prop_assert!(s.backlog().bytes <= c.memory_limit, "{:?}", s.backlog());
            prop_assert!(s.backlog().packets <= c.packet_limit);
            let limit = c.categories[usize::from(ci)].backlog_limit.unwrap();
            prop_assert!(s.counters()[usize::from(ci)].backlog.bytes <= limit);
        }
        serve(&mut s, &mut ck, u64::MAX);
        prop_assert!(s.is_empty());
        prop_assert!(ck.outstanding.is_empty());
        prop_assert_eq!(ck.sent + ck.dropped, ck.key_of.len() as u64);
    }
}

/// Saturates every category (greedy flows of mixed sizes) and measures each
/// one's wire rate over a window long enough for ~15000 packets.
fn saturate(
    cfg: &ShaperConfig,
    sizes: &[usize],
    reconf: Option<&ShaperConfig>,
) -> (Harness<Shaper<Pkt>>, f64) {
    let n = cfg.categories.len();
    let sources: Vec<Source> = (0..n)
        .flat_map(|c| {
            sizes
                .iter()
                .enumerate()
                .map(move |(f, &len)| Source::greedy(c as u8, (c * 16 + f) as u32, len))
        })
        .collect();
    let avg = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    let secs = (15_000.0 * avg * 8.0 / cfg.rate.bps() as f64).max(1.0);
    let span = (secs * SEC as f64) as u64;
    let mut h = Harness::new(Shaper::new(cfg), sources);
    h.overhead = cfg.overhead;
    let mut start = SEC / 4;
    if let Some(next) = reconf {
        h.run_until(span / 2);
        let backlog = h.q.backlog();
        h.q.reconfigure(next);
        assert_eq!(h.q.backlog(), backlog);
        start = span / 2 + SEC / 4;
    }
    h.window = (start, start + span);
    h.run_until(start + span);
    (h, span as f64 / SEC as f64)
}

/// Checks measured rates against the HTB promise: at least min, at most
/// max, and the spare split as the reference water-filling says (priority
/// order, weights within a level) within 5%.
fn check_rates(
    cfg: &ShaperConfig,
    h: &Harness<Shaper<Pkt>>,
    secs: f64,
) -> Result<(), TestCaseError> {
    let n = cfg.categories.len();
    let want = expected_rates(cfg, &vec![true; n]);
    // One maximum-size packet per category, in bits/s over the window.
    let pkt = (1540.0 * 8.0) / secs;
    let link = cfg.rate.bps() as f64;
    for c in 0..n {
        let got = h.window_rate(c);
        let min = cfg.categories[c].min.bps() as f64;
        let max = cfg.categories[c].max.bps() as f64;
        prop_assert!(
            got >= min * 0.99 - 2.0 * pkt,
            "cat {c} below min: {got} < {min}"
        );
        prop_assert!(
            got <= max * 1.01 + (n as f64 + 2.0) * pkt,
            "cat {c} above max: {got} > {max}"
        );
        let (g, w) = (got - min, want[c] - min);
        prop_assert!(
            (g - w).abs() <= 0.05 * w + 3.0 * pkt + 0.002 * link,
            "cat {c}: spare share {g} vs {w}; rates {:?} want {want:?}",
            (0..n).map(|i| h.window_rate(i)).collect::<Vec<_>>()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(24))]

    /// Under saturation: every guarantee met, no ceiling exceeded, spare
    /// capacity by priority then weight.
    #[test]
    fn saturated_categories_get_min_max_and_weighted_spare(
        cfg in arb_config(5),
        sizes in prop::collection::vec(64usize..1500, 1..4),
    ) {
        let (h, secs) = saturate(&cfg, &sizes, None);
        prop_assert_eq!(h.dropped, 0);
        check_rates(&cfg, &h, secs)?;
        let total: f64 = (0..cfg.categories.len()).map(|c| h.window_rate(c)).sum();
        let want: f64 = expected_rates(&cfg, &vec![true; cfg.categories.len()]).iter().sum();
        prop_assert!((total - want).abs() <= 0.01 * want, "link used {total} of {want}");
    }

    /// After a live change of weights, priorities, min/max and link rate,
    /// the shares follow the new configuration and nothing queued is lost.
    #[test]
    fn a_reconfiguration_moves_the_shares(
        (cfg, cfg2) in (1usize..=5).prop_flat_map(|n| (arb_config(n), arb_config(n)))
            .prop_filter("same categories", |(a, b)| a.categories.len() == b.categories.len()),
        sizes in prop::collection::vec(200usize..1500, 1..3),
    ) {
        let mut cfg2 = cfg2;
        cfg2.overhead = cfg.overhead;
        let (h, secs) = saturate(&cfg, &sizes, Some(&cfg2));
        prop_assert_eq!(h.dropped, 0);
        check_rates(&cfg2, &h, secs)?;
    }
}
