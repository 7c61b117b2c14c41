//! The download's side of the ISP-queue guard: signalling the flows with a
//! standing queue, throttling the link, and CAKE's ingress accounting.

use super::*;

/// A 10 Mbit/s shaper with a plain category 0 and an ECN category 1.
fn shaper(ingress: bool) -> Shaper<Pkt> {
    let mut cfg = ShaperConfig::new(
        mbit(10),
        vec![
            CategoryParams::new(3, 1, Rate::from_bps(0), mbit(10)),
            CategoryParams::new(3, 1, Rate::from_bps(0), mbit(10)),
        ],
    );
    cfg.categories[1].ecn = true;
    cfg.ingress = ingress;
    Shaper::new(&cfg)
}

fn queue(s: &mut Shaper<Pkt>, cat: u8, flow: u32, n: u64, first_id: u64, ect: bool) {
    for i in 0..n {
        let mut p = Pkt::plain(first_id + i);
        p.ect = ect;
        s.enqueue(p, CategoryId(cat), flow, Instant::ZERO);
    }
}

fn drained(s: &mut Shaper<Pkt>) -> Vec<(u64, DropReason)> {
    let mut got = Vec::new();
    s.drain_dropped(|p, r| got.push((p.id, r)));
    got
}

#[test]
fn a_signal_tells_every_flow_with_a_standing_queue_once_and_spares_the_thin_ones() {
    let mut s = shaper(true);
    // Flow 1: 5 kB queued (over two 1514-byte quanta); flow 2: 2 kB.
    queue(&mut s, 0, 1, 5, 100, false);
    queue(&mut s, 0, 2, 2, 200, false);
    // Flow 3, ECN-capable in the ECN category: marked, not dropped.
    queue(&mut s, 1, 3, 5, 300, true);
    assert!(s.signal(Instant::ZERO));
    // The head of flow 1, and nothing of flow 2.
    assert_eq!(drained(&mut s), vec![(100, DropReason::IspQueue)]);
    let c = s.counters();
    assert_eq!(c[0].dropped_isp.packets, 1);
    assert_eq!(c[0].dropped(DropReason::IspQueue).bytes, 1000);
    assert_eq!(c[1].dropped_isp.packets, 0);
    assert_eq!(c[1].ecn_marked, 1);
    assert!(c.iter().all(CategoryCounters::is_conserved), "{c:?}");
    assert_eq!(s.backlog().packets, 11);
    // The marked packet leaves marked, at the head of its flow.
    let mut out = Vec::new();
    let mut now = Instant::ZERO;
    while let Some(t) = s.next_wakeup() {
        now = now.max(t);
        while let Some(p) = s.dequeue(now) {
            out.push((p.id, p.ce));
        }
    }
    assert!(out.contains(&(300, true)), "{out:?}");
    assert_eq!(out.iter().filter(|(_, ce)| *ce).count(), 1);

    // Only thin flows: nobody to tell.
    let mut s = shaper(true);
    queue(&mut s, 0, 1, 3, 0, false);
    queue(&mut s, 1, 2, 1, 10, true);
    assert!(!s.signal(Instant::ZERO));
    assert!(drained(&mut s).is_empty());
    assert_eq!(s.backlog().packets, 4);
}

/// Bytes a shaper with one greedy flow sends between `from` and `to` ms,
/// `each` ms calling `between` on it.
fn sent_between(
    s: &mut Shaper<Pkt>,
    from: u64,
    to: u64,
    mut between: impl FnMut(&mut Shaper<Pkt>, Instant),
) -> u64 {
    let mut sent = 0;
    let mut id = 0;
    for ms in from..to {
        let now = Instant::from_nanos(ms * MS);
        while s.backlog().packets < 50 {
            id += 1;
            s.enqueue(Pkt::plain(id), CategoryId(0), 1, now);
        }
        between(s, now);
        while let Some(p) = s.dequeue(now) {
            sent += p.len as u64;
        }
        drained(s);
    }
    sent
}

#[test]
fn a_throttled_link_runs_at_its_share_of_the_rate_and_back() {
    let mut s = shaper(false);
    let full = sent_between(&mut s, 0, 1000, |_, _| {}) as f64;
    s.throttle(500);
    let half = sent_between(&mut s, 1000, 2000, |_, _| {}) as f64;
    s.throttle(1000);
    let again = sent_between(&mut s, 2000, 3000, |_, _| {}) as f64;
    // 10 Mbit/s is 1.25 MB a second.
    assert!((full - 1.25e6).abs() < 0.02 * 1.25e6, "{full}");
    assert!((half - 0.625e6).abs() < 0.02 * 1.25e6, "{half}");
    assert!((again - 1.25e6).abs() < 0.02 * 1.25e6, "{again}");
}

#[test]
fn in_ingress_mode_dropped_bytes_count_against_the_rate() {
    // One signal every 10 ms (CoDel drops some too: the queue stands).
    let every_10ms = |s: &mut Shaper<Pkt>, now: Instant| {
        if (now.as_nanos() / MS).is_multiple_of(10) {
            assert!(s.signal(now));
        }
    };
    let dropped = |s: &Shaper<Pkt>| s.counters()[0].dropped_total().bytes as f64;
    let mut egress = shaper(false);
    let sent = sent_between(&mut egress, 0, 1000, every_10ms) as f64;
    // Upstream of the line a drop frees its share of the rate...
    assert!(dropped(&egress) >= 100e3, "{}", dropped(&egress));
    assert!((sent - 1.25e6).abs() < 0.02 * 1.25e6, "{sent}");
    // ...downstream of it the dropped bytes already used the line.
    let mut ingress = shaper(true);
    let sent = sent_between(&mut ingress, 0, 1000, every_10ms) as f64;
    let used = sent + dropped(&ingress);
    assert!(dropped(&ingress) >= 100e3, "{}", dropped(&ingress));
    assert!(
        (used - 1.25e6).abs() < 0.02 * 1.25e6,
        "sent {sent} + dropped {}",
        dropped(&ingress)
    );
}
