use std::time::Duration;

use etherparse::PacketBuilder;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::config::{Direction, Flows};
use crate::packet::PacketMeta;
use crate::time::Instant;

fn frame(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, tcp_flags: Option<&str>) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(src, dst, 64);
    let mut out = Vec::new();
    match tcp_flags {
        None => b.udp(sp, dp).write(&mut out, b"x").unwrap(),
        Some(flags) => {
            let mut t = b.tcp(sp, dp, 1, 1000);
            if flags.contains('S') {
                t = t.syn();
            }
            if flags.contains('F') {
                t = t.fin();
            }
            if flags.contains('R') {
                t = t.rst();
            }
            if flags.contains('A') {
                t = t.ack(1);
            }
            t.write(&mut out, b"").unwrap()
        }
    }
    out
}

fn limits(max: u32) -> Flows {
    Flows {
        max_flows: max,
        tcp_idle_timeout: Duration::from_secs(600),
        udp_idle_timeout: Duration::from_secs(60),
        tcp_closed_timeout: Duration::from_secs(10),
    }
}

type FlowTable = super::FlowTable<()>;

/// Counts `f` in `table` through a cache of its own (so every call looks
/// the table up); returns the flow's id.
fn touch(table: &FlowTable, f: &[u8], dir: Direction, now: Instant) -> u64 {
    touch_via(table, &mut FlowCache::with_sets(1), f, dir, now)
}

fn touch_via(
    table: &FlowTable,
    cache: &mut FlowCache<()>,
    f: &[u8],
    dir: Direction,
    now: Instant,
) -> u64 {
    let pkt = PacketMeta::parse(f);
    let (key, side) = FlowKey::of(&pkt);
    table.track(cache, &key, side, &pkt, dir, now).0.id()
}

#[test]
fn both_halves_share_one_canonical_entry() {
    let up = frame([198, 18, 0, 10], 40000, [198, 19, 1, 1], 443, Some("S"));
    let down = frame([198, 19, 1, 1], 443, [198, 18, 0, 10], 40000, Some("SA"));
    let (k1, s1) = FlowKey::of(&PacketMeta::parse(&up));
    let (k2, s2) = FlowKey::of(&PacketMeta::parse(&down));
    assert_eq!(k1, k2);
    assert_ne!(s1, s2);

    let table = FlowTable::new(&limits(100));
    let now = Instant::from_nanos(1);
    let a = touch(&table, &up, Direction::Upload, now);
    let b = touch(&table, &down, Direction::Download, now);
    assert_eq!(a, b);
    assert_eq!(table.len(), 1);
    table.get(&k1, |f| {
        assert_eq!(f.packets(Direction::Upload), 1);
        assert_eq!(f.packets(Direction::Download), 1);
        assert_eq!(f.initiator(), s1);
        assert_eq!(f.first_direction(), Direction::Upload);
    });
}

#[test]
fn vlan_is_part_of_the_key() {
    let mut tagged = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .single_vlan(30.try_into().unwrap())
        .ipv4([198, 18, 0, 10], [198, 19, 1, 1], 64)
        .udp(1000, 53)
        .write(&mut tagged, b"x")
        .unwrap();
    let plain = frame([198, 18, 0, 10], 1000, [198, 19, 1, 1], 53, None);
    let (k1, _) = FlowKey::of(&PacketMeta::parse(&tagged));
    let (k2, _) = FlowKey::of(&PacketMeta::parse(&plain));
    assert_ne!(k1, k2);
    assert_eq!(k1.vlan, 30);
}

#[test]
fn table_stays_bounded_and_keeps_recent_and_active_flows() {
    let max = 1000u32;
    let table = FlowTable::new(&limits(max));
    let voice = frame([198, 18, 0, 10], 50000, [198, 19, 1, 1], 3478, None);
    let mut now = Instant::from_nanos(1);
    touch(&table, &voice, Direction::Upload, now);
    // A flood of one-packet flows, 20x the table, with the voice flow
    // sending every 50 flood packets.
    let total = 20 * max;
    for i in 0..total {
        now = now.add_nanos(1000);
        let f = frame(
            [198, 18, (i >> 8) as u8, i as u8],
            1024 + (i % 50000) as u16,
            [198, 19, 9, 9],
            80,
            None,
        );
        touch(&table, &f, Direction::Upload, now);
        if i % 50 == 0 {
            touch(&table, &voice, Direction::Upload, now);
        }
        assert!(table.len() <= max as usize, "len {} > max", table.len());
    }
    let (vkey, _) = FlowKey::of(&PacketMeta::parse(&voice));
    let voice_packets = table.get(&vkey, |f| f.total_packets());
    assert!(
        voice_packets.is_some_and(|p| p > 100),
        "the active voice flow was evicted: {voice_packets:?}"
    );
    // The most recent flood flows survive.
    for i in (total - 100)..total {
        let f = frame(
            [198, 18, (i >> 8) as u8, i as u8],
            1024 + (i % 50000) as u16,
            [198, 19, 9, 9],
            80,
            None,
        );
        let (k, _) = FlowKey::of(&PacketMeta::parse(&f));
        assert!(
            table.get(&k, |_| ()).is_some(),
            "recent flow {i} was evicted"
        );
    }
    let evicted = table.stats.evicted.load(Ordering::Relaxed);
    let created = table.stats.created.load(Ordering::Relaxed);
    assert_eq!(created - evicted, table.len() as u64);
    assert!(evicted >= u64::from(total - max));
    // Every flow is queued exactly once for the CLOCK hands.
    assert_eq!(table.queued(), table.len());
}

#[test]
fn idle_and_closed_flows_expire() {
    let table = FlowTable::new(&limits(100));
    let t0 = Instant::from_nanos(1);
    let udp = frame([198, 18, 0, 10], 5000, [198, 19, 1, 1], 53, None);
    let tcp = frame([198, 18, 0, 10], 40000, [198, 19, 1, 1], 443, Some("SA"));
    let closed = frame([198, 18, 0, 11], 40001, [198, 19, 1, 1], 443, Some("FA"));
    touch(&table, &udp, Direction::Upload, t0);
    touch(&table, &tcp, Direction::Upload, t0);
    touch(&table, &closed, Direction::Upload, t0);
    assert_eq!(table.expire(t0 + Duration::from_secs(9)), 0);
    // The closed TCP flow goes after 10 s.
    assert_eq!(table.expire(t0 + Duration::from_secs(11)), 1);
    // UDP after 60 s, open TCP after 600 s.
    assert_eq!(table.expire(t0 + Duration::from_secs(61)), 1);
    assert_eq!(table.len(), 1);
    assert_eq!(table.expire(t0 + Duration::from_secs(601)), 1);
    assert!(table.is_empty());
    assert_eq!(table.stats.expired.load(Ordering::Relaxed), 3);
}

#[test]
fn new_syn_on_a_closed_flow_starts_afresh() {
    let table = FlowTable::new(&limits(100));
    let t0 = Instant::from_nanos(1);
    let fin = frame([198, 18, 0, 10], 40000, [198, 19, 1, 1], 443, Some("FA"));
    let syn = frame([198, 18, 0, 10], 40000, [198, 19, 1, 1], 443, Some("S"));
    touch(&table, &fin, Direction::Upload, t0);
    touch(&table, &fin, Direction::Upload, t0);
    touch(&table, &syn, Direction::Upload, t0);
    let (k, _) = FlowKey::of(&PacketMeta::parse(&syn));
    table.get(&k, |f| {
        assert!(!f.closed());
        assert_eq!(f.total_packets(), 1);
    });
}

/// A restart by one direction's thread while the other direction's
/// counters still count the old connection: they read as fresh at once,
/// and their own thread starts them afresh on its next packet.
#[test]
fn a_restart_clears_the_other_directions_counters_too() {
    let table = FlowTable::new(&limits(100));
    let t0 = Instant::from_nanos(1);
    let fin = frame([198, 18, 0, 10], 40000, [198, 19, 1, 1], 443, Some("FA"));
    let reply = frame([198, 19, 1, 1], 443, [198, 18, 0, 10], 40000, Some("A"));
    let syn = frame([198, 18, 0, 10], 40000, [198, 19, 1, 1], 443, Some("S"));
    for _ in 0..3 {
        touch(&table, &reply, Direction::Download, t0);
    }
    touch(&table, &fin, Direction::Upload, t0);
    let (k, _) = FlowKey::of(&PacketMeta::parse(&syn));
    assert_eq!(table.get(&k, |f| f.packets(Direction::Download)), Some(3));
    touch(&table, &syn, Direction::Upload, t0);
    table.get(&k, |f| {
        assert_eq!(f.packets(Direction::Download), 0);
        assert_eq!(f.bytes(Direction::Download), 0);
        assert_eq!(f.total_packets(), 1);
    });
    touch(&table, &reply, Direction::Download, t0);
    assert_eq!(table.get(&k, |f| f.packets(Direction::Download)), Some(1));
}

/// A UDP frame of flow number `i`, one distinct flow per `i`.
fn nth_flow(i: u32) -> Vec<u8> {
    let [a, b, c, d] = i.to_be_bytes();
    frame(
        [10, b, c, d],
        1000 + u16::from(a),
        [198, 19, 1, 1],
        53,
        None,
    )
}

/// Creates flows `from..from + count`, all at `now`.
fn fill(table: &FlowTable, from: u32, count: u32, now: Instant) {
    for i in from..from + count {
        touch(table, &nth_flow(i), Direction::Upload, now);
    }
}

fn evicted(table: &FlowTable) -> u64 {
    table.stats.evicted.load(Ordering::Relaxed)
}

#[test]
fn after_a_shrink_each_new_flow_evicts_a_few_and_the_table_never_grows() {
    let (n, m) = (5000u32, 100u32);
    let table = FlowTable::new(&limits(n));
    let now = Instant::from_nanos(1);
    fill(&table, 0, n, now);
    table.set_limits(&limits(m));

    // The first new flow pays for a few of the 4901 excess, not all.
    let before = evicted(&table);
    touch(&table, &nth_flow(n), Direction::Upload, now);
    assert_eq!(
        evicted(&table) - before,
        1 + EXTRA_EVICTIONS_PER_INSERT as u64
    );
    assert_eq!(table.len(), n as usize - EXTRA_EVICTIONS_PER_INSERT);

    // A flood after the shrink: never more than the constant per flow, the
    // table shrinks with every flow until it reaches the new limit.
    let mut len = table.len();
    let mut inserts_to_limit = None;
    for i in 1..n {
        let before = evicted(&table);
        touch(&table, &nth_flow(n + i), Direction::Upload, now);
        assert!(evicted(&table) - before <= 1 + EXTRA_EVICTIONS_PER_INSERT as u64);
        if len > m as usize {
            assert!(table.len() < len, "flow {i}: {} after {len}", table.len());
        } else {
            assert!(table.len() <= m as usize, "flow {i}: {}", table.len());
        }
        len = table.len();
        if len <= m as usize && inserts_to_limit.is_none() {
            inserts_to_limit = Some(i + 1);
        }
    }
    // 3 net per flow: (5000 - 100) / 3, rounded up.
    assert_eq!(inserts_to_limit, Some(1634));
    assert_eq!(table.len(), m as usize);
    let created = table.stats.created.load(Ordering::Relaxed);
    assert_eq!(created - evicted(&table), m as u64);
}

#[test]
fn trims_work_off_the_excess_in_bounded_steps_and_spare_active_flows() {
    let (n, m) = (3000u32, 100u32);
    let table = FlowTable::new(&limits(n));
    let now = Instant::from_nanos(1);
    let voice = frame([198, 18, 0, 10], 50000, [198, 19, 1, 1], 3478, None);
    touch(&table, &voice, Direction::Upload, now);
    fill(&table, 0, n - 1, now);
    table.set_limits(&limits(m));

    let budget = 500;
    let mut calls = 0;
    while table.len() > m as usize {
        touch(&table, &voice, Direction::Upload, now);
        let t = table.trim_within(budget);
        assert!(t.evicted <= budget && t.evicted > 0, "{t:?}");
        calls += 1;
        assert!(calls <= 10, "no convergence: {} flows", table.len());
    }
    // 2900 excess at 500 a call.
    assert_eq!(calls, 6);
    assert_eq!(table.len(), m as usize);
    assert_eq!(evicted(&table), u64::from(n - m));
    let (vkey, _) = FlowKey::of(&PacketMeta::parse(&voice));
    assert!(
        table.get(&vkey, |_| ()).is_some(),
        "the active flow was evicted"
    );
    // At the limit there is nothing more to do.
    assert_eq!(table.trim(), Trimmed::default());
}

/// A thread that panicked while holding the CLOCK queue's lock (or the
/// limits') leaves it poisoned; the queue is still valid, and new flows
/// must still go in. Before, `insert` gave up on a poisoned lock and
/// `track` looped forever looking for the flow it had not inserted.
#[test]
fn a_poisoned_lock_does_not_stop_new_flows() {
    let table = Arc::new(FlowTable::new(&limits(4)));
    let now = Instant::from_nanos(1);
    fill(&table, 0, 2, now);
    for which in ["clock", "limits"] {
        let t = Arc::clone(&table);
        let poisoner = std::thread::spawn(move || {
            let _clock = t.queue_locks()[0].lock().unwrap();
            let _limits = t.limits.lock().unwrap();
            panic!("poisoning the {which} lock on purpose");
        });
        assert!(poisoner.join().is_err());
    }
    assert!(table.queue_locks()[0].is_poisoned() && table.limits.is_poisoned());
    // New flows (the insert path), with evictions past max_flows, and
    // the housekeeping still work. On a thread: a regression hangs, and
    // the test must fail instead of hanging the suite.
    let (tx, rx) = std::sync::mpsc::channel();
    let t = Arc::clone(&table);
    std::thread::spawn(move || {
        let ids: Vec<u64> = (2..10)
            .map(|i| touch(&t, &nth_flow(i), Direction::Upload, now))
            .collect();
        let _ = tx.send(ids);
    });
    let ids = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("track did not return on a poisoned lock");
    assert_eq!(ids, (3..11).collect::<Vec<u64>>());
    assert_eq!(table.len(), 4);
    table.set_limits(&limits(2));
    let _ = table.trim();
    assert_eq!(table.len(), 2);
    assert_eq!(table.expire(Instant::from_nanos(120_000_000_000)), 2);
    assert!(table.is_empty());
}

#[test]
fn expiry_walks_the_queues_a_bounded_number_of_entries_per_call() {
    let max = 20_000u32;
    let table = FlowTable::new(&limits(max));
    let t0 = Instant::from_nanos(1);
    fill(&table, 0, max, t0);
    let t1 = t0 + Duration::from_secs(61);
    // 1 000 per queue and call: the table is covered over several calls,
    // every flow exactly once, and removed flows leave their queue too.
    let queues = table.queue_locks().len();
    assert!(queues > 1, "one queue: the split was not tested");
    let mut calls = 0;
    while !table.is_empty() {
        let removed = table.expire_within(t1, 1000);
        assert!(removed <= 1000 * queues, "{removed} in one call");
        assert!(removed > 0);
        assert_eq!(table.queued(), table.len());
        calls += 1;
        assert!(calls < 100);
    }
    assert!(
        calls >= (max as usize).div_ceil(1000 * queues),
        "{calls} calls"
    );
    assert_eq!(table.stats.expired.load(Ordering::Relaxed), u64::from(max));
}

#[test]
fn an_active_flow_is_not_expired_and_keeps_its_place() {
    let table = FlowTable::new(&limits(100));
    let t0 = Instant::from_nanos(1);
    let f = nth_flow(1);
    let id = touch(&table, &f, Direction::Upload, t0);
    touch(&table, &nth_flow(2), Direction::Upload, t0);
    let t1 = t0 + Duration::from_secs(50);
    touch(&table, &f, Direction::Download, t1);
    assert_eq!(table.expire(t0 + Duration::from_secs(61)), 1);
    assert_eq!(touch(&table, &f, Direction::Upload, t1), id);
}

/// What `FlowValue::reset` calls a test value saw.
#[derive(Default)]
struct Counted(AtomicUsize);

impl FlowValue for Counted {
    fn reset(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_cached_flow_that_left_the_table_is_looked_up_again_and_its_value_reset() {
    let table = super::FlowTable::<Counted>::new(&limits(2));
    let mut cache = FlowCache::new();
    let t0 = Instant::from_nanos(1);
    let f = nth_flow(1);
    let pkt = PacketMeta::parse(&f);
    let (key, side) = FlowKey::of(&pkt);
    let (flow, created) = table.track(&mut cache, &key, side, &pkt, Direction::Upload, t0);
    assert!(created);
    let id = flow.id();
    let (flow, created) = table.track(&mut cache, &key, side, &pkt, Direction::Upload, t0);
    assert!(!created);
    assert_eq!((flow.id(), flow.packets(Direction::Upload)), (id, 2));
    // Expired while this thread's cache still holds it.
    assert_eq!(table.expire(t0 + Duration::from_secs(61)), 1);
    let mut old = None;
    table.for_each(|_, _| old = Some(()));
    assert!(old.is_none());
    // Its next packet makes a new flow, not a count in the dead one.
    let (flow, created) = table.track(&mut cache, &key, side, &pkt, Direction::Upload, t0);
    assert!(created, "the dead entry was used");
    assert_ne!(flow.id(), id);
    assert_eq!(flow.packets(Direction::Upload), 1);
    assert_eq!(flow.value.0.load(Ordering::Relaxed), 0);
    // Eviction resets the value too (it gives back inspection memory).
    let g = nth_flow(2);
    let h = nth_flow(3);
    touch_any(&table, &g, t0);
    touch_any(&table, &h, t0);
    table.get(&key, |_| panic!("evicted flow still in the table"));
    let evicted = table.stats.evicted.load(Ordering::Relaxed);
    assert_eq!(evicted, 1);
    let mut fresh = FlowCache::with_sets(1);
    let (dead, _) = table.track(&mut fresh, &key, side, &pkt, Direction::Upload, t0);
    assert_eq!(dead.value.0.load(Ordering::Relaxed), 0, "a new entry");
}

fn touch_any<V: FlowValue>(table: &super::FlowTable<V>, f: &[u8], now: Instant) {
    let pkt = PacketMeta::parse(f);
    let (key, side) = FlowKey::of(&pkt);
    table.track(
        &mut FlowCache::with_sets(1),
        &key,
        side,
        &pkt,
        Direction::Upload,
        now,
    );
}

/// Both directions' threads at once, as in the daemon: one entry per
/// connection whoever creates it, and each direction's counters exact.
#[test]
fn two_threads_share_entries_and_count_their_own_direction_exactly() {
    let table = Arc::new(FlowTable::new(&limits(10_000)));
    let flows = 500u32;
    let rounds = 40u32;
    let run = |dir: Direction| {
        let table = Arc::clone(&table);
        std::thread::spawn(move || {
            let mut cache = FlowCache::new();
            let now = Instant::from_nanos(1);
            for _ in 0..rounds {
                for i in 0..flows {
                    let [_, b, c, d] = i.to_be_bytes();
                    let (src, dst) = ([10, b, c, d], [198, 19, 1, 1]);
                    let f = match dir {
                        Direction::Upload => frame(src, 1000, dst, 53, None),
                        Direction::Download => frame(dst, 53, src, 1000, None),
                    };
                    touch_via(&table, &mut cache, &f, dir, now);
                }
            }
        })
    };
    let (up, down) = (run(Direction::Upload), run(Direction::Download));
    up.join().unwrap();
    down.join().unwrap();
    assert_eq!(table.len(), flows as usize);
    assert_eq!(
        table.stats.created.load(Ordering::Relaxed),
        u64::from(flows)
    );
    assert_eq!(table.queued(), flows as usize);
    table.for_each(|_, f| {
        assert_eq!(f.packets(Direction::Upload), u64::from(rounds));
        assert_eq!(f.packets(Direction::Download), u64::from(rounds));
    });
}

/// Four flows that share a set all stay cached; a fifth replaces one; a
/// dead entry is replaced in place, never cached twice; a flow just
/// created is not cached (until its next packet).
#[test]
fn the_cache_keeps_four_flows_per_set_and_drops_dead_ones() {
    let now = Instant::from_nanos(1);
    let mut cache = FlowCache::<()>::with_sets(1);
    let keys: Vec<FlowKey> = (0..5)
        .map(|i| FlowKey::of(&PacketMeta::parse(&nth_flow(i))).0)
        .collect();
    let new_flow = |k: &FlowKey| {
        (
            Arc::new(Flow::new(*k, 1, Side::Lo, Direction::Upload, now)),
            false,
        )
    };
    let created = Arc::new(Flow::new(keys[0], 1, Side::Lo, Direction::Upload, now));
    assert!(!cache.get_or(1, &keys[0], || (created.clone(), true)).1);
    assert!(
        !cache.get_or(1, &keys[0], || (created.clone(), true)).1,
        "cached when created"
    );
    for k in &keys[..4] {
        assert!(!cache.get_or(1, k, || new_flow(k)).1);
    }
    for k in &keys[..4] {
        assert!(
            cache.get_or(1, k, || new_flow(k)).1,
            "evicted within 4 ways"
        );
    }
    assert!(!cache.get_or(1, &keys[4], || new_flow(&keys[4])).1);
    assert!(cache.get_or(1, &keys[4], || new_flow(&keys[4])).1);
    let cached = cache.cached_keys();
    assert_eq!(cached.len(), 4);
    assert!(cached.contains(&keys[4]));
    // A retired entry is a miss, and its replacement takes its way.
    let k = cached[0];
    let (dead, _) = cache.get_or(1, &k, || new_flow(&k));
    dead.retire();
    assert!(!cache.get_or(1, &k, || new_flow(&k)).1);
    assert!(cache.get_or(1, &k, || new_flow(&k)).1);
    let mut after = cache.cached_keys();
    after.sort();
    let mut before = cached;
    before.sort();
    assert_eq!(after, before, "a dead entry took a second way");
}
