//! The WAN-delay measurement ([`crate::wan`]) through the real engines in virtual time: a LAN packet
//! goes up through the upload engine, its answer comes down through the
//! download engine, and the meter says what it measured.

use std::sync::Arc;
use std::time::Duration;

use etherparse::PacketBuilder;

use super::frame::Frame;
use super::{DirectionEngine, Shared};
use crate::config::{Config, Direction, EMBEDDED_NAME, Env, load_str};
use crate::shaper::{Shaper, ShaperConfig};
use crate::time::Instant;
use crate::wan::{DelaySample, Source, Toward};

const LAN: [u8; 4] = [198, 18, 0, 10];
const SRV: [u8; 4] = [198, 18, 0, 20];
pub(super) const SYN: u8 = 0x02;
pub(super) const ACK: u8 = 0x10;

pub(super) type Engine = DirectionEngine<Shaper<Frame>>;

fn engines() -> (Engine, Engine) {
    engines_with("")
}

/// The upload and download engines of the default configuration with
/// `extra` appended to it.
pub(super) fn engines_with(extra: &str) -> (Engine, Engine) {
    let toml = format!("{}\n{extra}", crate::config::DEFAULT_CONFIG_TOML);
    let cfg: Config = load_str(EMBEDDED_NAME, &toml, &Env::None).unwrap();
    let shared = Arc::new(Shared::new(&cfg));
    let q = |d| Shaper::new(&ShaperConfig::from_config(&cfg, d));
    (
        DirectionEngine::new(Direction::Upload, Arc::clone(&shared), q(Direction::Upload)),
        DirectionEngine::new(Direction::Download, shared, q(Direction::Download)),
    )
}

pub(super) struct Seg {
    up: bool,
    seq: u32,
    ack: u32,
    flags: u8,
    ts: Option<(u32, u32)>,
    len: usize,
}

pub(super) fn seg(
    up: bool,
    seq: u32,
    ack: u32,
    flags: u8,
    ts: Option<(u32, u32)>,
    len: usize,
) -> Seg {
    Seg {
        up,
        seq,
        ack,
        flags,
        ts,
        len,
    }
}

pub(super) fn frame(s: &Seg) -> Frame {
    let (src, dst, sp, dp) = if s.up {
        (LAN, SRV, 40000, 443)
    } else {
        (SRV, LAN, 443, 40000)
    };
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, s.seq, 64240);
    if s.flags & SYN != 0 {
        b = b.syn();
    }
    if s.flags & ACK != 0 {
        b = b.ack(s.ack);
    }
    if let Some((val, ecr)) = s.ts {
        let mut o = vec![1, 1, 8, 10];
        o.extend_from_slice(&val.to_be_bytes());
        o.extend_from_slice(&ecr.to_be_bytes());
        b = b.options_raw(&o).unwrap();
    }
    let mut out = Vec::new();
    b.write(&mut out, &vec![0u8; s.len]).unwrap();
    Frame::new(vec![0u8; 2048].into_boxed_slice(), &out)
}

fn dns(up: bool, id: u16) -> Frame {
    let (src, dst, sp, dp) = if up {
        (LAN, SRV, 5353, 53)
    } else {
        (SRV, LAN, 53, 5353)
    };
    let mut payload = vec![0u8; 12];
    payload[..2].copy_from_slice(&id.to_be_bytes());
    if !up {
        payload[2] = 0x80;
    }
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .udp(sp, dp)
        .write(&mut out, &payload)
        .unwrap();
    Frame::new(vec![0u8; 2048].into_boxed_slice(), &out)
}

pub(super) fn ms(n: u64) -> Instant {
    Instant::from_nanos(1 + n * 1_000_000)
}

/// Sends `f` up at `arrive`, lets it leave qosd at `leave`.
pub(super) fn up_and_out(up: &mut Engine, f: Frame, arrive: Instant, leave: Instant) {
    up.ingress(f, arrive);
    while up.dequeue(leave).is_some() {}
}

fn drained(down: &mut Engine) -> Vec<(Toward, DelaySample)> {
    let mut v = Vec::new();
    down.wan_meter_mut().unwrap().drain(|t, s| v.push((t, s)));
    v
}

fn count(down: &mut Engine, s: Source) -> u64 {
    down.wan_meter_mut().unwrap().samples_by_source()[s.index()]
}

#[test]
fn a_round_trip_counts_from_departure_so_qosd_queue_is_not_in_it() {
    let (mut up, mut down) = engines();
    // The first packet seen arms the flow: the probe goes on the first
    // packet of the next tick (an echo of a tick may answer any packet
    // sent in it).
    for _ in 0..2 {
        let f = frame(&seg(true, 1, 1, ACK, Some((99, 7)), 100));
        up_and_out(&mut up, f, ms(0), ms(0));
    }
    // Queued 50 ms in qosd, then 30 ms to the server and back.
    up_and_out(
        &mut up,
        frame(&seg(true, 1, 1, ACK, Some((100, 7)), 100)),
        ms(0),
        ms(50),
    );
    down.ingress(frame(&seg(false, 1, 101, ACK, Some((900, 100)), 0)), ms(80));
    assert_eq!(count(&mut down, Source::TcpTimestamp), 1);
    let s = drained(&mut down);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].0, Toward::Either);
    assert_eq!(s[0].1.base, Duration::from_millis(30));
    assert_eq!(s[0].1.queue, Duration::ZERO);
    // An echo of the same TSval again is not a second sample.
    down.ingress(frame(&seg(false, 1, 101, ACK, Some((901, 100)), 0)), ms(90));
    assert_eq!(count(&mut down, Source::TcpTimestamp), 1);
    // A later probe whose answer took 80 ms: 50 ms above the path's base.
    let arm = frame(&seg(true, 101, 1, ACK, Some((199, 901)), 100));
    up_and_out(&mut up, arm, ms(199), ms(199));
    up_and_out(
        &mut up,
        frame(&seg(true, 101, 1, ACK, Some((200, 901)), 100)),
        ms(200),
        ms(200),
    );
    down.ingress(
        frame(&seg(false, 1, 201, ACK, Some((1000, 200)), 0)),
        ms(280),
    );
    let s = drained(&mut down);
    assert_eq!(s.last().unwrap().1.queue, Duration::from_millis(50));
    assert_eq!(s.last().unwrap().1.base, Duration::from_millis(30));
}

#[test]
fn a_resent_segment_withdraws_its_probe_karn() {
    let (mut up, mut down) = engines();
    // No timestamps: timed by the end of the data.
    up_and_out(
        &mut up,
        frame(&seg(true, 1000, 1, ACK, None, 100)),
        ms(0),
        ms(0),
    );
    // Sent again before the ACK: which copy the ACK answers is unknown.
    up_and_out(
        &mut up,
        frame(&seg(true, 1000, 1, ACK, None, 100)),
        ms(300),
        ms(300),
    );
    down.ingress(frame(&seg(false, 1, 1100, ACK, None, 0)), ms(320));
    assert_eq!(count(&mut down, Source::TcpAck), 0);
    // Without a resend, the ACK of the end times it.
    up_and_out(
        &mut up,
        frame(&seg(true, 1100, 1, ACK, None, 100)),
        ms(400),
        ms(400),
    );
    down.ingress(frame(&seg(false, 1, 1150, ACK, None, 0)), ms(410));
    assert_eq!(
        count(&mut down, Source::TcpAck),
        0,
        "a partial ACK does not answer"
    );
    down.ingress(frame(&seg(false, 1, 1200, ACK, None, 0)), ms(425));
    assert_eq!(count(&mut down, Source::TcpAck), 1);
    assert_eq!(
        drained(&mut down).last().unwrap().1.base,
        Duration::from_millis(25)
    );
}

#[test]
fn handshakes_and_dns_queries_are_timed() {
    let (mut up, mut down) = engines();
    up_and_out(
        &mut up,
        frame(&seg(true, 5000, 0, SYN, None, 0)),
        ms(0),
        ms(0),
    );
    down.ingress(frame(&seg(false, 9000, 5001, SYN | ACK, None, 0)), ms(40));
    assert_eq!(count(&mut down, Source::TcpHandshake), 1);
    up_and_out(&mut up, dns(true, 0x1234), ms(100), ms(100));
    down.ingress(dns(false, 0x4321), ms(110));
    assert_eq!(count(&mut down, Source::Dns), 0, "another query's answer");
    down.ingress(dns(false, 0x1234), ms(120));
    assert_eq!(count(&mut down, Source::Dns), 1);
    // The acknowledged bytes of the upload: the SYN-ACK is the first ACK seen.
    down.ingress(frame(&seg(false, 9001, 6001, ACK, None, 0)), ms(200));
    assert_eq!(down.wan_meter_mut().unwrap().acked_bytes(), 1000);
}

/// A flow with timestamps at both ends, whose download path gains
/// `extra_down` of queue after 5 s: the meter charges it to the download.
fn one_way(extra_down: u64, extra_up: u64) -> (Vec<DelaySample>, Vec<DelaySample>, usize) {
    let (mut up, mut down) = engines();
    let (mut seq, mut ack) = (1u32, 1u32);
    let server_clock = |t_ms: u64| (t_ms + 777_000) as u32;
    let (mut ups, mut downs, mut either) = (Vec::new(), Vec::new(), 0);
    for i in 0..800u64 {
        let t = i * 10;
        let (up_ms, down_ms) = if t >= 5_000 {
            (15 + extra_up, 15 + extra_down)
        } else {
            (15, 15)
        };
        let tsval_c = (t + 5) as u32;
        up_and_out(
            &mut up,
            frame(&seg(true, seq, ack, ACK, Some((tsval_c, 0)), 100)),
            ms(t),
            ms(t),
        );
        seq += 100;
        // The server answers as the segment arrives, stamping its clock.
        let at_server = t + up_ms;
        ack += 10;
        let answer = seg(
            false,
            ack,
            seq,
            ACK,
            Some((server_clock(at_server), tsval_c)),
            10,
        );
        down.ingress(frame(&answer), ms(at_server + down_ms));
        if t >= 6_000 {
            for (to, s) in drained(&mut down) {
                match to {
                    Toward::Upload => ups.push(s),
                    Toward::Download => downs.push(s),
                    Toward::Either => either += 1,
                }
            }
        } else {
            drained(&mut down);
        }
    }
    (ups, downs, either)
}

#[test]
fn one_way_delays_tell_a_download_queue_from_an_upload_queue() {
    let med = |v: &mut Vec<DelaySample>| {
        v.sort_by_key(|s| s.queue);
        v[v.len() / 2].queue
    };
    let (mut ups, mut downs, either) = one_way(100, 0);
    assert!(
        ups.len() > 50 && downs.len() > 50,
        "{} {}",
        ups.len(),
        downs.len()
    );
    assert_eq!(
        either, 0,
        "with both clocks known nothing is left ambiguous"
    );
    let (u, d) = (med(&mut ups), med(&mut downs));
    assert!(
        d >= Duration::from_millis(98) && d <= Duration::from_millis(102),
        "down {d:?}"
    );
    assert!(u <= Duration::from_millis(2), "up {u:?}");
    let (mut ups, mut downs, _) = one_way(0, 60);
    let (u, d) = (med(&mut ups), med(&mut downs));
    assert!(
        u >= Duration::from_millis(58) && u <= Duration::from_millis(62),
        "up {u:?}"
    );
    assert!(d <= Duration::from_millis(2), "down {d:?}");
    assert_eq!(ups[0].base, Duration::from_millis(30));
}

/// A UDP frame of a call's RTCP between the LAN phone and the far end.
fn rtcp(up: bool, payload: &[u8]) -> Frame {
    let (src, dst, sp, dp) = if up {
        (LAN, SRV, 50001, 3479)
    } else {
        (SRV, LAN, 3479, 50001)
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .udp(sp, dp)
        .write(&mut out, payload)
        .unwrap();
    Frame::new(vec![0u8; 2048].into_boxed_slice(), &out)
}

#[test]
fn a_calls_rtcp_reports_give_round_trips_less_the_far_ends_hold() {
    let (mut up, mut down) = engines();
    // The phone's SR waits 30 ms in qosd, leaves at 30 ms; the far end
    // holds it 250 ms (DLSR 16384/65536 s) and its RR arrives at 320 ms:
    // 40 ms on the WAN, neither qosd's queue nor the hold in it.
    let sr = crate::wan::rtcp::packet(200, 0x0000_ABCD_1234_0000, &[]);
    up_and_out(&mut up, rtcp(true, &sr), ms(0), ms(30));
    // RTP of the call and the far end's reports about other SRs answer
    // nothing.
    down.ingress(rtcp(false, &[0x80, 0x00, 0, 1, 0, 0, 0, 0]), ms(100));
    down.ingress(
        rtcp(
            false,
            &crate::wan::rtcp::packet(201, 0, &[(0x0101_0101, 5)]),
        ),
        ms(150),
    );
    assert_eq!(count(&mut down, Source::Rtcp), 0);
    let rr = crate::wan::rtcp::packet(200, 7, &[(0xABCD_1234, 16_384)]);
    down.ingress(rtcp(false, &rr), ms(320));
    assert_eq!(count(&mut down, Source::Rtcp), 1);
    let s = drained(&mut down);
    assert_eq!(s.len(), 1, "{s:?}");
    let (to, sample) = s[0];
    assert_eq!(to, Toward::Either);
    assert_eq!(sample.base, Duration::from_millis(40));
    // Answered once: the same report again gives nothing.
    down.ingress(rtcp(false, &rr), ms(330));
    assert_eq!(count(&mut down, Source::Rtcp), 1);
    // A hold longer than the time since the SR left is no sample (a far
    // end whose DLSR is wrong, or a report about an older SR).
    up_and_out(
        &mut up,
        rtcp(
            true,
            &crate::wan::rtcp::packet(200, 0x0000_0000_5555_0000, &[]),
        ),
        ms(400),
        ms(400),
    );
    down.ingress(
        rtcp(
            false,
            &crate::wan::rtcp::packet(201, 0, &[(0x5555, 65_536)]),
        ),
        ms(450),
    );
    assert_eq!(count(&mut down, Source::Rtcp), 1);
}

/// A download from a server that stamps 1 ms timestamps: 1400-byte
/// segments every ms for 3 s, the way down 15 ms long except from 2.0 s
/// to 2.3 s, when a queue of up to 30 ms stands in the ISP's buffer; qosd
/// forwards everything as it arrives but in that spell (its own queue
/// grows too, as when the ISP's buffer drains into it). Gives, at 2.25 s
/// and at the end: the guard's signals, the isp_queue drops and the
/// download's throttle.
fn isp_queue_episode(
    guard: bool,
    autorate: bool,
) -> ([(u64, u64, u32); 2], super::IspQueueCounters) {
    let text = crate::config::DEFAULT_CONFIG_TOML
        .replacen(
            "isp_queue_guard = true",
            &format!("isp_queue_guard = {guard}"),
            1,
        )
        .replacen(
            "[autorate]\nenabled = false",
            &format!("[autorate]\nenabled = {autorate}"),
            1,
        );
    let cfg: Config = load_str(EMBEDDED_NAME, &text, &Env::None).unwrap();
    let shared = Arc::new(Shared::new(&cfg));
    let mut down: Engine = DirectionEngine::new(
        Direction::Download,
        shared,
        Shaper::new(&ShaperConfig::from_config(&cfg, Direction::Download)),
    );
    let state = |down: &Engine| {
        let drops: u64 = down
            .category_counters()
            .iter()
            .map(|c| c.dropped_isp.packets)
            .sum();
        (
            down.isp_queue_signals(),
            drops,
            down.queue().throttle_permille(),
        )
    };
    let mut seen = [(0, 0, 0); 2];
    for t in 0..3_000u64 {
        let outside = match t {
            2_000..2_300 => (t - 2_000).min(30),
            _ => 0,
        };
        let d = seg(
            false,
            1 + t as u32 * 1400,
            1,
            ACK,
            Some((777_000 + t as u32, 5)),
            1400,
        );
        let now = ms(t + 15 + outside);
        down.ingress(frame(&d), now);
        if !(2_000..2_300).contains(&t) {
            while down.dequeue(now).is_some() {}
        }
        down.drain_dropped(|_, _| {});
        if t == 2_250 {
            seen[0] = state(&down);
        }
    }
    seen[1] = state(&down);
    (seen, down.counters().isp_queue)
}

#[test]
fn a_queue_standing_in_the_isps_buffer_signals_the_download_and_throttles_it_while_it_stands() {
    // Autorate on changes nothing here: the guard runs beside it.
    let (with_autorate, _) = isp_queue_episode(true, true);
    let ([during, after], c) = isp_queue_episode(true, false);
    assert_eq!(with_autorate, [during, after]);
    assert!(during.0 >= 1, "{during:?}");
    assert!(during.1 >= 1, "{during:?}");
    assert_eq!(during.2, crate::wan::guard::THROTTLE_PERMILLE);
    // Gone: the full rate again.
    assert_eq!(after.2, 1000, "{after:?}");
    // What the metrics show: throttled for most of the 0.3 s spell (it
    // stands from 3 ms on), no queue at the end, nothing given up.
    assert!(
        (200_000_000..=320_000_000).contains(&c.throttled_ns),
        "{c:?}"
    );
    assert_eq!(
        (c.standing_ns, c.gave_up, c.signals),
        (0, 0, after.0),
        "{c:?}"
    );
    // Switched off: the same spell goes unanswered.
    let ([during, after], c) = isp_queue_episode(false, false);
    assert_eq!((during, after), ((0, 0, 1000), (0, 0, 1000)));
    assert_eq!(c, super::IspQueueCounters::default());
}

/// A TCP frame of the test's flow with window field `window`, the
/// window-scale option `scale` and `len` bytes of payload.
fn windowed(up: bool, flags: u8, window: u16, scale: Option<u8>, len: usize) -> Frame {
    let (src, dst, sp, dp) = if up {
        (LAN, SRV, 40000, 443)
    } else {
        (SRV, LAN, 443, 40000)
    };
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, 1, window);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & ACK != 0 {
        // The LAN end's SYN is sequence number 1.
        b = b.ack(2);
    }
    if let Some(s) = scale {
        b = b.options_raw(&[1, 3, 3, s]).unwrap();
    }
    let mut out = Vec::new();
    b.write(&mut out, &vec![0u8; len]).unwrap();
    Frame::new(vec![0u8; 2048].into_boxed_slice(), &out)
}

/// The test flow's handshake (30 ms round trip), then 250 ms of download
/// faster than qosd's rate, then an acknowledgement announcing 8 MB: the
/// window it leaves qosd with, and the upload's count of lowered ones.
fn window_after_a_full_download(clamp: bool) -> (u16, Vec<u8>, u64) {
    let text = crate::config::DEFAULT_CONFIG_TOML.replacen(
        "window_clamp = true",
        &format!("window_clamp = {clamp}"),
        1,
    );
    let cfg: Config = load_str(EMBEDDED_NAME, &text, &Env::None).unwrap();
    let shared = Arc::new(Shared::new(&cfg));
    let q = |d| Shaper::new(&ShaperConfig::from_config(&cfg, d));
    let mut up: Engine =
        DirectionEngine::new(Direction::Upload, Arc::clone(&shared), q(Direction::Upload));
    let mut down: Engine =
        DirectionEngine::new(Direction::Download, shared, q(Direction::Download));
    up_and_out(
        &mut up,
        windowed(true, SYN, 64240, Some(7), 0),
        ms(0),
        ms(0),
    );
    down.ingress(windowed(false, SYN | ACK, 65535, Some(8), 0), ms(30));
    while down.dequeue(ms(30)).is_some() {}
    for t in 31..280 {
        for _ in 0..5 {
            down.ingress(windowed(false, ACK, 512, None, 1448), ms(t));
        }
        while down.dequeue(ms(t)).is_some() {}
        down.drain_dropped(|_, _| {});
    }
    let c = down.counters().window_clamp;
    assert_eq!(c.full && c.windows > 0, clamp, "{c:?}");
    up.ingress(windowed(true, ACK, 0xffff, None, 0), ms(280));
    let out = up.dequeue(ms(280)).unwrap();
    let bytes = out.bytes().to_vec();
    let tcp = crate::packet::PacketMeta::parse(&bytes).tcp.to_vec();
    let field = u16::from_be_bytes([tcp[14], tcp[15]]);
    (field, bytes, up.counters().window_clamp.lowered)
}

#[test]
fn a_full_download_lowers_the_window_the_office_announces() {
    let (field, bytes, lowered) = window_after_a_full_download(true);
    // One flow: the whole line's rate (the default 46 Mbit/s) over the
    // round trip plus the allowance (4 ms, or 3 or 2 after the queue
    // stood), in the LAN end's units of 128 bytes.
    let window = |ms: u64| (46_000_000u64 / 8 * (30 + ms) / 1000).div_ceil(128);
    assert!(
        (window(2)..=window(4)).contains(&u64::from(field)),
        "{field}"
    );
    assert_eq!(lowered, 1);
    let mut full = bytes.clone();
    assert!(crate::packet::rewrite::complete_l4_checksum(&mut full));
    assert_eq!(full, bytes, "the TCP checksum follows the window");
    // Off: left as it came.
    assert_eq!(window_after_a_full_download(false).0, 0xffff);
}
