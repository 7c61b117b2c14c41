use std::time::Duration;

use super::frame::{Frame, FramePool};
use super::*;
use crate::classify::tests::{config, tcp, udp};
use crate::flow::FlowKey;
use crate::packet::PacketMeta;
use crate::shaper::{Shaper, ShaperConfig};

fn engine(cfg: &Config, dir: Direction) -> DirectionEngine<Shaper<Frame>> {
    let shared = Arc::new(Shared::new(cfg));
    DirectionEngine::new(
        dir,
        shared,
        Shaper::new(&ShaperConfig::from_config(cfg, dir)),
    )
}

fn frame(pool: &mut FramePool, bytes: &[u8]) -> Frame {
    Frame::new(pool.get(), bytes)
}

const PC: [u8; 4] = [192, 168, 1, 10];
const SRV: [u8; 4] = [198, 19, 1, 1];

#[test]
fn every_frame_is_sent_or_counted() {
    let cfg = config("");
    let mut e = engine(&cfg, Direction::Upload);
    let mut pool = FramePool::new(2048, 0);
    let arp = {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        f.extend_from_slice(&[0u8; 28]);
        f
    };
    let bad = tcp(PC, 1, SRV, 2, b"", true)[..20].to_vec();
    let mut now = Instant::from_nanos(1);
    let mut sent = 0u64;
    let mut dropped = 0u64;
    let n = 5000u64;
    for i in 0..n {
        let bytes = match i % 5 {
            0 => arp.clone(),
            1 => bad.clone(),
            _ => udp(PC, 40000 + (i % 50) as u16, SRV, 443, &[0u8; 1200], 0),
        };
        e.ingress(frame(&mut pool, &bytes), now);
        now = now + Duration::from_micros(100); // ~100 Mbit/s offered into 20 Mbit
        while let Some(f) = e.dequeue(now) {
            sent += 1;
            pool.put(f.into_buffer());
        }
        e.drain_dropped(|f, _| {
            dropped += 1;
            pool.put(f.into_buffer());
        });
    }
    // Drain.
    for _ in 0..100_000 {
        let Some(t) = e.next_wakeup() else { break };
        now = now.max(t);
        while let Some(f) = e.dequeue(now) {
            sent += 1;
            pool.put(f.into_buffer());
        }
        e.drain_dropped(|f, _| {
            dropped += 1;
            pool.put(f.into_buffer());
        });
    }
    assert_eq!(sent + dropped, n, "sent {sent} + dropped {dropped}");
    assert!(
        dropped > 0,
        "the link was oversubscribed: some drops expected"
    );
    let c = e.counters();
    assert_eq!(c.non_ip_frames, n / 5);
    assert_eq!(c.malformed_frames, n / 5);
    assert_eq!(c.ip_frames, n - 2 * (n / 5));
    let arrived: u64 = e
        .category_counters()
        .iter()
        .map(|c| c.arrived.packets)
        .sum();
    assert_eq!(arrived, n);
    assert!(e.category_counters().iter().all(|c| c.is_conserved()));
    // Non-IP frames went to the control category.
    let control = cfg.category_id("control").unwrap();
    assert!(e.category_counters()[control.index()].arrived.packets >= n / 5);
    // Buffers are recycled: the pool stays near the queue's working size.
    assert!(pool.allocated < 5000, "pool grew to {}", pool.allocated);
}

#[test]
fn egress_dscp_marking_per_category() {
    let mut cfg = config("[[rule]]\nname = \"pbx\"\nports = 5060\ncategory = \"voice\"\n");
    cfg.category[1].dscp = Some(crate::config::Dscp::EF);
    let mut e = engine(&cfg, Direction::Upload);
    let mut pool = FramePool::new(2048, 0);
    let now = Instant::from_nanos(1);
    e.ingress(frame(&mut pool, &udp(PC, 5060, SRV, 5060, b"x", 0)), now);
    e.ingress(frame(&mut pool, &udp(PC, 5000, SRV, 5000, b"x", 0)), now);
    let mut dscps = Vec::new();
    let mut t = now;
    while dscps.len() < 2 {
        t = t + Duration::from_millis(1);
        while let Some(f) = e.dequeue(t) {
            let m = PacketMeta::parse(f.bytes());
            dscps.push((m.dst_port, m.dscp));
        }
    }
    dscps.sort();
    assert_eq!(dscps, vec![(5000, 0), (5060, 46)]);
    assert_eq!(e.counters().dscp_marked, 1);
}

#[test]
fn reload_reaches_both_directions() {
    let cfg = config("");
    let shared = Arc::new(Shared::new(&cfg));
    let mut up = DirectionEngine::new(
        Direction::Upload,
        Arc::clone(&shared),
        Shaper::new(&ShaperConfig::from_config(&cfg, Direction::Upload)),
    );
    let mut pool = FramePool::new(2048, 0);
    let now = Instant::from_nanos(1);
    let game = udp(PC, 40000, SRV, 9999, &[0u8; 1200], 0);
    assert_eq!(
        up.ingress(frame(&mut pool, &game), now),
        cfg.category_id("browsing").unwrap()
    );
    assert!(up.refresh(ShaperConfig::from_config).is_none());
    let new_cfg = config("[[rule]]\nname = \"game\"\nports = 9999\ncategory = \"bulk\"\n");
    shared.reload(&new_cfg);
    // One call picks the configuration up and reconfigures the shaper.
    assert!(up.refresh(ShaperConfig::from_config).is_some());
    assert_eq!(
        up.ingress(frame(&mut pool, &game), now),
        new_cfg.category_id("bulk").unwrap()
    );
    // Both packets are still queued: the reconfiguration kept the first.
    let queued: u64 = up
        .category_counters()
        .iter()
        .map(|c| c.backlog.packets)
        .sum();
    assert_eq!(queued, 2);
}

/// A data path that picks up a reload while it is being installed gets the
/// new configuration together with the new classifier, never the new
/// classifier with the old categories (which it would keep until the next
/// change: the race that once left a weight change through the API without
/// effect).
#[test]
fn a_concurrent_reader_sees_each_reload_whole() {
    use std::sync::atomic::{AtomicBool, AtomicU32};
    let base = config("");
    let shared = Arc::new(Shared::new(&base));
    let reloads = 300u32;
    let seen = Arc::new(AtomicU32::new(1));
    let done = Arc::new(AtomicBool::new(false));
    let mismatches = Arc::new(AtomicU32::new(0));
    let reader = {
        let (shared, seen, done, mismatches) = (
            Arc::clone(&shared),
            Arc::clone(&seen),
            Arc::clone(&done),
            Arc::clone(&mismatches),
        );
        // Built before the first reload, so it must pick up every one.
        let mut e = DirectionEngine::new(
            Direction::Upload,
            shared,
            Shaper::new(&ShaperConfig::from_config(&base, Direction::Upload)),
        );
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                if let Some(cfg) = e.refresh(ShaperConfig::from_config) {
                    let weight = cfg.category.first().map_or(0, |c| c.weight);
                    if weight != e.classifier().generation() {
                        mismatches.fetch_add(1, Ordering::AcqRel);
                    }
                    seen.store(weight, Ordering::Release);
                }
            }
        })
    };
    for generation in 2..reloads + 2 {
        let mut cfg = base.clone();
        // The weight names the reload, so the reader can tell which
        // configuration came with which classifier.
        cfg.category[0].weight = generation;
        shared.reload(&cfg);
        // Wait (bounded) for the reader to pick this reload up.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while seen.load(Ordering::Acquire) < generation
            && mismatches.load(Ordering::Acquire) == 0
            && std::time::Instant::now() < deadline
        {
            std::hint::spin_loop();
        }
        if mismatches.load(Ordering::Acquire) > 0 {
            break;
        }
    }
    done.store(true, Ordering::Release);
    reader.join().expect("reader thread");
    assert_eq!(
        mismatches.load(Ordering::Acquire),
        0,
        "the reader got a classifier with another reload's configuration"
    );
    assert_eq!(seen.load(Ordering::Acquire), reloads + 1);
}

/// Any LAN host can open flows that each start something that never
/// completes: half a big ClientHello, the first of two QUIC Initials, a
/// DNS answer over TCP whose length says 4 KiB more is coming. However
/// many, the state they hold stays within `classify.dpi_memory` at every
/// packet; what did not fit is refused and counted per kind; a ClientHello
/// in one segment is still read meanwhile; every byte comes back when the
/// flows go.
#[test]
fn a_flood_of_incomplete_flows_stays_within_the_dpi_budget() {
    use crate::classify::budget::Holder;
    use crate::classify::dpi::quic::Version;
    use crate::classify::dpi::quic::tests::{crypto_frame, hello_message, protect};
    use crate::classify::tests::tls_record;

    let limit = 256 * 1024;
    let cfg = config("[classify]\ndpi_memory = \"256 KiB\"\n[flows]\nmax_flows = 100000\n");
    let mut e = engine(&cfg, Direction::Upload);
    let mut pool = FramePool::new(2048, 0);
    let shared = Arc::clone(e.shared());
    let big_hello = tls_record(&hello_message(b"flood.example", 12_000));
    let quic_hello = hello_message(b"flood.example", 3_000);
    let mut now = Instant::from_nanos(1);
    let mut most = 0;
    let flows = 3_000u32;
    for i in 0..flows {
        let host = [10, 1, (i >> 8) as u8, i as u8];
        let port = 20_000 + (i % 40_000) as u16;
        let packets: Vec<Vec<u8>> = match i % 3 {
            0 => vec![
                tcp(host, port, SRV, 443, &big_hello[..1400], false),
                tcp(host, port, SRV, 443, &big_hello[1400..2800], false),
            ],
            1 => {
                let dcid = i.to_be_bytes();
                let initial = protect(Version::V1, &dcid, 0, &crypto_frame(0, &quic_hello[..1100]));
                vec![udp(host, port, SRV, 443, &initial, 0)]
            }
            _ => {
                let mut answer = vec![0x10, 0x00, 0x12, 0x34, 0x81, 0x80];
                answer.resize(1400, 0);
                vec![tcp(SRV, 53, host, port, &answer, false)]
            }
        };
        for p in packets {
            now = now + Duration::from_micros(50);
            e.ingress(frame(&mut pool, &p), now);
            while let Some(f) = e.dequeue(now) {
                pool.put(f.into_buffer());
            }
            e.drain_dropped(|f, _| pool.put(f.into_buffer()));
            let used = shared.dpi.used();
            assert!(used <= limit, "{used} bytes held after flow {i}");
            most = most.max(used);
        }
    }
    // The budget was used, not dodged, and every flow is still tracked.
    assert!(most > limit * 3 / 4, "{most}");
    assert_eq!(shared.table.len(), flows as usize);
    // What the flows hold is exactly what the budget counts.
    let mut held = 0;
    shared
        .table
        .for_each(|_, f| held += f.value.lock().dpi_bytes());
    assert_eq!(held, shared.dpi.used());
    let refused = e.counters().dpi_refusals;
    for kind in [Holder::Flow, Holder::Tls, Holder::Dns] {
        assert!(refused[kind.index()] > 0, "{}: {refused:?}", kind.as_str());
    }
    assert!(
        refused.iter().sum::<u64>() > u64::from(flows) / 2,
        "{refused:?}"
    );

    // Meanwhile a whole ClientHello is still read, by state that lives for
    // the one packet.
    let hello = tls_record(&hello_message(b"contoso.sharepoint.com", 600));
    let office = tcp(PC, 40100, SRV, 443, &hello, false);
    let before = e.counters().dpi_refusals[Holder::Flow.index()];
    e.ingress(frame(&mut pool, &office), now);
    assert_eq!(e.counters().dpi_refusals[Holder::Flow.index()], before + 1);
    let (key, _) = FlowKey::of(&PacketMeta::parse(&office));
    assert_eq!(
        shared
            .table
            .get(&key, |f| f.value.lock().host.clone())
            .flatten()
            .as_deref(),
        Some("contoso.sharepoint.com")
    );

    // The flows expire: all of it comes back.
    let n = shared.table.expire(now + Duration::from_secs(86_400));
    eprintln!("expired {n} left {}", shared.table.len());

    assert!(shared.table.is_empty());
    assert_eq!(shared.dpi.used(), 0);
}

/// The budget is the one both directions and every classifier share: a
/// reload changes its limit and keeps what flows hold.
#[test]
fn the_dpi_budget_is_shared_and_outlives_reloads() {
    use crate::classify::dpi::quic::tests::hello_message;
    use crate::classify::tests::tls_record;

    let cfg = config("[classify]\ndpi_memory = \"64 KiB\"\n");
    let mut up = engine(&cfg, Direction::Upload);
    let shared = Arc::clone(up.shared());
    let mut down = DirectionEngine::new(
        Direction::Download,
        Arc::clone(&shared),
        Shaper::new(&ShaperConfig::from_config(&cfg, Direction::Download)),
    );
    let mut pool = FramePool::new(2048, 0);
    let hello = tls_record(&hello_message(b"contoso.sharepoint.com", 2000));
    let now = Instant::from_nanos(1);
    up.ingress(
        frame(&mut pool, &tcp(PC, 40200, SRV, 443, &hello[..1400], false)),
        now,
    );
    let held = shared.dpi.used();
    assert!(held > 1400);
    shared.reload(&config("[classify]\ndpi_memory = \"1 KiB\"\n"));
    assert!(
        up.refresh(ShaperConfig::from_config).is_some()
            && down.refresh(ShaperConfig::from_config).is_some()
    );
    assert_eq!((shared.dpi.limit(), shared.dpi.used()), (1024, held));
    assert!(Arc::ptr_eq(up.classifier().budget(), &shared.dpi));
    assert!(Arc::ptr_eq(down.classifier().budget(), &shared.dpi));
    // Past the new limit: the download half's new flow is refused.
    let dns = tcp(SRV, 53, PC, 40201, &[0x10, 0x00, 1, 2], false);
    down.ingress(frame(&mut pool, &dns), now);
    let refused = down.counters().dpi_refusals;
    assert_eq!((refused[0], refused[3]), (1, 1), "{refused:?}");
    // Nor can the hello's buffer grow for its second half: it is given
    // up, and its memory given back.
    up.ingress(
        frame(&mut pool, &tcp(PC, 40200, SRV, 443, &hello[1400..], false)),
        now,
    );
    assert_eq!(up.counters().dpi_refusals, [0, 1, 0, 0]);
    assert!(shared.dpi.used() < 1024, "{}", shared.dpi.used());
    shared.table.expire(now + Duration::from_secs(86_400));
    assert_eq!(shared.dpi.used(), 0);
}

/// Each frame counts for its LAN computer: the source MAC of an upload,
/// the destination MAC of a download, with its LAN address and category;
/// and the frame carries that computer's tag to the shaper.
#[test]
fn frames_count_for_their_lan_host_in_both_directions() {
    let cfg = config("[[rule]]\nname = \"pbx\"\nports = 5060\ncategory = \"voice\"\n");
    let voice = cfg.category_id("voice").unwrap().index();
    let mut pool = FramePool::new(2048, 0);
    let now = Instant::from_nanos(1);
    let a = [2, 0, 0, 0, 0, 0xa];
    let gw = [2, 0, 0, 0, 0, 1];
    let with_macs = |mut f: Vec<u8>, dst: [u8; 6], src: [u8; 6]| {
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f
    };
    let mut up = engine(&cfg, Direction::Upload);
    let f = with_macs(udp(PC, 5060, SRV, 5060, b"x", 0), gw, a);
    let len = f.len() as u64;
    up.ingress(frame(&mut pool, &f), now);
    up.ingress(frame(&mut pool, &f), now);
    let hosts: Vec<_> = up.hosts().hosts().copied().collect();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].mac, a);
    assert_eq!(hosts[0].bytes[voice], 2 * len);
    let mut pc = [0u8; 16];
    pc[10..].copy_from_slice(&[0xff, 0xff, 192, 168, 1, 10]);
    assert_eq!(hosts[0].addresses(), &[pc]);
    let out = up.dequeue(now + Duration::from_millis(1)).unwrap();
    assert_eq!(out.host, host_tag(a, None));
    // The same computer over IPv6 (a privacy address) is the same host:
    // one entry, both addresses, the same tag for the shaper.
    let v6 = [
        0x20, 0x01, 0, 0x02, 0, 0, 0, 0, 0x1a, 0x2b, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut f6 = Vec::new();
    etherparse::PacketBuilder::ethernet2(a, gw)
        .ipv6(
            v6,
            [0x20, 0x01, 0, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20],
            64,
        )
        .udp(40000, 443)
        .write(&mut f6, b"x")
        .unwrap();
    up.ingress(frame(&mut pool, &f6), now);
    let hosts: Vec<_> = up.hosts().hosts().copied().collect();
    assert_eq!(hosts.len(), 1, "IPv4 and IPv6 of one MAC are one host");
    assert_eq!(hosts[0].addresses(), &[pc, v6]);
    let out = up.dequeue(now + Duration::from_millis(2)).unwrap();
    assert_eq!(out.host, host_tag(a, None));

    let mut down = engine(&cfg, Direction::Download);
    let f = with_macs(udp(SRV, 5060, PC, 5060, b"x", 0), a, gw);
    down.ingress(frame(&mut pool, &f), now);
    let hosts: Vec<_> = down.hosts().hosts().copied().collect();
    assert_eq!((hosts.len(), hosts[0].mac), (1, a));
    assert_eq!(hosts[0].addresses(), &[pc]);
}

/// A rule that makes UDP 5060 voice, and voice served first, as shipped
/// (this file's layout has control first).
fn pbx_voice_first() -> Config {
    let mut cfg = config("[[rule]]\nname = \"pbx\"\nports = 5060\ncategory = \"voice\"\n");
    for c in &mut cfg.category {
        c.priority = if c.name == "voice" {
            0
        } else {
            c.priority.max(1)
        };
    }
    cfg
}

/// With a doorbell (the AF_XDP backend's), a call's key goes into its map
/// once, and its frames then wake the data path as they arrive: no window
/// around its expected frames, only while one is queued.
#[test]
fn a_call_that_rings_the_doorbell_needs_no_window() {
    let cfg = pbx_voice_first();
    let mut e = engine(&cfg, Direction::Upload);
    e.arm_bells(true);
    let mut pool = FramePool::new(2048, 0);
    let ms = |m: u64| Instant::from_nanos(m * 1_000_000);
    let within = Duration::from_millis(1);
    let voice = udp(PC, 40000, SRV, 5060, &[0u8; 160], 0);
    let mut keys = Vec::new();
    for m in (400..600).step_by(20) {
        e.ingress(frame(&mut pool, &voice), ms(m));
        while let Some(f) = e.dequeue(ms(m)) {
            pool.put(f.into_buffer());
        }
        e.take_bell_changes(|k, on| {
            keys.push((*k, on));
            true
        });
    }
    assert_eq!(
        keys,
        vec![(crate::packet::bell::bell_key(&voice).unwrap(), true)]
    );
    // Every frame after the first rang.
    assert_eq!(e.bell_frames(), 9);
    assert!(e.urgent_calm(ms(600), within), "due, but it will ring");
    e.ingress(frame(&mut pool, &voice), ms(600));
    assert!(!e.urgent_calm(ms(600), within), "queued: sent at once");
    // Without the doorbell (a socket re-opened without one) the same call
    // has windows again, once its beat is learned anew.
    e.arm_bells(false);
    for m in (620..800).step_by(20) {
        while let Some(f) = e.dequeue(ms(m)) {
            pool.put(f.into_buffer());
        }
        e.ingress(frame(&mut pool, &voice), ms(m));
        while let Some(f) = e.dequeue(ms(m)) {
            pool.put(f.into_buffer());
        }
    }
    assert!(!e.urgent_calm(ms(800), within), "a window");
    assert!(e.urgent_calm(ms(810), within), "between two");
}

/// The engine follows the beat of voice frames only: a call at 20 ms makes
/// the direction un-calm around each expected frame and calm in between,
/// however much other traffic arrives; after a reload that makes another
/// category the most urgent, that category's frames are followed instead.
#[test]
fn voice_frames_set_the_beat_other_traffic_does_not() {
    let cfg = pbx_voice_first();
    let mut e = engine(&cfg, Direction::Upload);
    let mut pool = FramePool::new(2048, 0);
    let ms = |m: u64| Instant::from_nanos(m * 1_000_000);
    let within = Duration::from_millis(1);
    let voice = udp(PC, 40000, SRV, 5060, &[0u8; 160], 0);
    let bulk = udp(PC, 40001, SRV, 5000, &[0u8; 1200], 0);
    let drain = |e: &mut DirectionEngine<Shaper<Frame>>, pool: &mut FramePool, t| {
        while let Some(f) = e.dequeue(t) {
            pool.put(f.into_buffer());
        }
    };
    // Bulk every millisecond, at random phases of the beat: never a beat.
    for m in 0..200 {
        e.ingress(frame(&mut pool, &bulk), ms(m));
        drain(&mut e, &mut pool, ms(m));
    }
    assert!((0..200).all(|m| e.urgent_calm(ms(200 + m), within)));
    // A call: a voice frame every 20 ms from 400, bulk in between.
    for m in 400..600 {
        if m % 20 == 0 {
            e.ingress(frame(&mut pool, &voice), ms(m));
        }
        let t = ms(m) + Duration::from_micros(300);
        e.ingress(frame(&mut pool, &bulk), t);
        drain(&mut e, &mut pool, t);
    }
    assert!(!e.urgent_calm(ms(600), within), "a voice frame is due");
    assert!(e.urgent_calm(ms(610), within), "between two");
    // A voice frame still queued (off the beat, a tolerated surprise) is
    // not held back either, until it has left.
    e.ingress(frame(&mut pool, &voice), ms(611));
    assert!(
        !e.urgent_calm(ms(611), within),
        "a voice frame waits in the queue"
    );
    drain(&mut e, &mut pool, ms(612));
    assert!(e.urgent_calm(ms(612), within), "it left");
    // The same frames, with the bulk frames' category made the most
    // urgent: they, arriving without a beat, now keep the direction
    // precise.
    let bulk_category = e.ingress(frame(&mut pool, &bulk), ms(700));
    let mut urgent_bulk = cfg.clone();
    for (i, c) in urgent_bulk.category.iter_mut().enumerate() {
        c.priority = if i == bulk_category.index() {
            0
        } else {
            c.priority.max(1)
        };
    }
    e.shared().reload(&urgent_bulk);
    e.refresh(ShaperConfig::from_config);
    let mut m = 1_000u64;
    let mut seed = 7u64;
    while m < 1_200 {
        e.ingress(frame(&mut pool, &bulk), ms(m));
        drain(&mut e, &mut pool, ms(m));
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        m += 2 + (seed >> 33) % 24;
    }
    assert!(
        !e.urgent_calm(ms(1_199), within),
        "bulk without a beat, now the most urgent, is never calm"
    );
}
