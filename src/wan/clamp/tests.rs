use std::sync::Arc;

use etherparse::{PacketBuilder, TcpOptionElement};

use super::*;

const MS: u64 = 1_000_000;
const FLOW: u64 = 7;
/// 47 Mbit/s in bytes/s.
const RATE: u64 = 47_000_000 / 8;

fn at(ns: u64) -> Instant {
    Instant::from_nanos(ns)
}

/// A TCP frame from the LAN (`up`) or the WAN with `flags`, window
/// field `window`, a window-scale option `scale` (SYNs) and `len` bytes.
fn tcp(up: bool, syn: bool, window: u16, scale: Option<u8>, len: usize) -> Vec<u8> {
    let (src, dst) = ([198, 18, 0, 10], [198, 18, 0, 20]);
    let (src, dst, sp, dp) = if up {
        (src, dst, 40000, 443)
    } else {
        (dst, src, 443, 40000)
    };
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, 1, window)
        .ack(1);
    if syn {
        b = b.syn();
    }
    if let Some(s) = scale {
        b = b
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(s),
            ])
            .unwrap();
    }
    let mut out = Vec::new();
    b.write(&mut out, &vec![0u8; len]).unwrap();
    out
}

fn meta(f: &[u8]) -> PacketMeta<'_> {
    PacketMeta::parse(f)
}

/// A board and both sides on it.
fn pair() -> (Arc<WindowBoard>, DownloadWindows, UploadWindows) {
    let board = Arc::new(WindowBoard::default());
    let d = DownloadWindows::new(Arc::clone(&board));
    let u = UploadWindows::new(Arc::clone(&board));
    (board, d, u)
}

/// The LAN end's SYN of `flow` with window scale `scale`.
fn lan_syn(u: &mut UploadWindows, scale: Option<u8>, flow: u64, enabled: bool, now: Instant) {
    let syn = tcp(true, true, 64240, scale, 0);
    assert_eq!(u.on_lan_packet(&meta(&syn), flow, enabled, now), None);
}

/// A UDP frame of `len` bytes in all, from the WAN (the rest of the
/// download: it counts in the total, not in the flow).
fn udp(len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 18, 0, 20], [198, 18, 0, 10], 64)
        .udp(443, 40001)
        .write(&mut out, &vec![0u8; len - 42])
        .unwrap();
    out
}

/// The far end's SYN-ACK, then `ms` of data in 1448-byte segments (1502-
/// byte frames), one every `gap_us`, with one 30 ms round trip sample;
/// after each, `rest` bytes of other download traffic; the download full
/// throughout.
fn download(d: &mut DownloadWindows, remote_scale: Option<u8>, gap_us: u64, rest: usize, ms: u64) {
    d.on_packet(
        &meta(&tcp(false, true, 65535, remote_scale, 0)),
        FLOW,
        None,
        RATE,
        true,
        at(0),
    );
    let seg = tcp(false, false, 65535, None, 1448);
    let mut t = MS;
    let mut first = true;
    while t < ms * MS {
        // 1.5 ms of the line: full, neither dry nor standing.
        d.on_queue(RATE * 3 / 2000, RATE, at(t));
        let rtt = first.then_some(30 * MS);
        first = false;
        d.on_packet(&meta(&seg), FLOW, rtt, RATE, true, at(t));
        let mut left = rest;
        while left > 0 {
            let n = left.clamp(64, 1000);
            d.on_packet(&meta(&udp(n)), 99, None, RATE, true, at(t));
            left = left.saturating_sub(n);
        }
        t += gap_us * 1000;
    }
}

/// Nine other flows carry data in the first period (7 segments each:
/// enough to count as sharing the line).
fn nine_others(d: &mut DownloadWindows) {
    let other = tcp(false, false, 65535, None, 1448);
    for f in 100..109u64 {
        d.on_packet(
            &meta(&tcp(false, true, 65535, Some(7), 0)),
            f,
            None,
            RATE,
            true,
            at(0),
        );
        for _ in 0..7 {
            d.on_packet(&meta(&other), f, None, RATE, true, at(MS / 2));
        }
    }
}

#[test]
fn a_full_download_lowers_each_flows_window_to_its_rate_times_its_round_trip() {
    let (board, mut d, mut u) = pair();
    // The LAN end's SYN (scale 7), then 40 Mbit/s of download for 250 ms.
    assert_eq!(
        u.on_lan_packet(
            &meta(&tcp(true, true, 64240, Some(7), 0)),
            FLOW,
            true,
            at(0)
        ),
        None
    );
    download(&mut d, Some(8), 300, 0, 250);
    assert!(d.full(at(250 * MS)));
    assert!(d.windows_published() >= 1);
    // All of the download: the line's rate over (30 + 4) ms.
    let (w, scaled) = board.window(FLOW, at(250 * MS)).unwrap();
    assert!(scaled);
    assert_eq!(w, RATE * 34 / 1000);
    // An acknowledgement announcing 0xffff << 7 = 8 MB is lowered to
    // the window, rounded up to the LAN end's unit of 128 bytes.
    let ack = tcp(true, false, 0xffff, None, 0);
    let units = u
        .on_lan_packet(&meta(&ack), FLOW, true, at(250 * MS))
        .unwrap();
    assert_eq!(u64::from(units), w.div_ceil(128));
    assert_eq!(u.lowered(), 1);
    // One announcing less is left alone.
    let small = tcp(true, false, 100, None, 0);
    assert_eq!(
        u.on_lan_packet(&meta(&small), FLOW, true, at(250 * MS)),
        None
    );
}

#[test]
fn a_flow_among_many_gets_its_share_of_the_line_or_an_equal_one_whichever_is_more() {
    let board = Arc::new(WindowBoard::default());
    let mut d = DownloadWindows::new(Arc::clone(&board));
    nine_others(&mut d);
    // 85 % of the download's bytes: 85 % of the line's rate over the
    // round trip plus 4 ms (the flow carries faster than that, so what
    // it carried does not hold its window back).
    download(&mut d, Some(7), 280, 265, 150);
    let (w, _) = board.window(FLOW, at(150 * MS)).unwrap();
    let share = RATE * 34 / 1000 * 1502 / 1767;
    assert!(w.abs_diff(share) < share / 50, "{w} vs {share}");
    // 7 %: less than a tenth (ten flows): a tenth.
    let board = Arc::new(WindowBoard::default());
    let mut d = DownloadWindows::new(Arc::clone(&board));
    nine_others(&mut d);
    download(&mut d, Some(7), 500, 20_000, 150);
    let (w, _) = board.window(FLOW, at(150 * MS)).unwrap();
    assert_eq!(w, RATE * 34 / 1000 / 10);
}

#[test]
fn the_lift_to_an_equal_share_is_held_to_a_quarter_over_what_the_flow_carried() {
    // Among ten flows, one carrying 1.2 Mbit/s, 4 % of the download (back
    // from BBR's ProbeRTT, say): its first interval (since its SYN-ACK)
    // ends at an equal share (a tenth)...
    let equal = RATE * 34 / 1000 / 10;
    let run = |ms: u64| {
        let board = Arc::new(WindowBoard::default());
        let mut d = DownloadWindows::new(Arc::clone(&board));
        nine_others(&mut d);
        download(&mut d, Some(7), 10_000, 40_000, ms);
        board.window(FLOW, at(ms * MS)).unwrap().0
    };
    assert_eq!(run(150), equal);
    // ...after it, the lift is held to a quarter over what it carried
    // (over its round trip plus 4 ms) and four segments.
    let w = run(250);
    let carried = 1502 * 100 * 34 / 1000;
    let grown = carried + carried / 4 + 4 * 1448;
    assert!(w.abs_diff(grown) < grown / 10, "{w} vs {grown}");
    assert!(w < equal * 2 / 3, "{w} vs {equal}");
}

/// Flows [`FLOW`] and `B` from a full download's start (30 ms round
/// trips), `segments(flow, ms)` segments each per ms; the board after
/// `ms_end`.
fn two_flows(segments: impl Fn(u64, u64) -> u32, ms_end: u64) -> Arc<WindowBoard> {
    const B: u64 = 100;
    let board = Arc::new(WindowBoard::default());
    let mut d = DownloadWindows::new(Arc::clone(&board));
    let syn_ack = tcp(false, true, 65535, Some(7), 0);
    for f in [FLOW, B] {
        d.on_packet(&meta(&syn_ack), f, Some(30 * MS), RATE, true, at(0));
    }
    let seg = tcp(false, false, 65535, None, 1448);
    for ms in 1..=ms_end {
        d.on_queue(RATE * 3 / 2000, RATE, at(ms * MS));
        for f in [FLOW, B] {
            for _ in 0..segments(f, ms) {
                d.on_packet(&meta(&seg), f, None, RATE, true, at(ms * MS));
            }
        }
    }
    board
}

/// The line's rate over a 30 ms round trip and the 4 ms allowance.
const LINE: u64 = RATE * 34 / 1000;

#[test]
fn a_window_grows_by_a_quarter_per_interval_when_others_slow_down() {
    // Half the download each (half the line's window each), then B slows
    // right down (BBR's ProbeRTT) from 300 ms and FLOW doubles its rate:
    // its share is nearly all of the download, but its window grows to a
    // quarter over what it carried (and four segments), not to the line
    // at once.
    let segments = |f: u64, ms: u64| match (f == FLOW, ms < 300) {
        (_, true) => 1,
        (true, false) => 2,
        (false, false) => u32::from(ms.is_multiple_of(10)),
    };
    assert_eq!(
        two_flows(segments, 300)
            .window(FLOW, at(300 * MS))
            .unwrap()
            .0,
        LINE / 2
    );
    let w = two_flows(segments, 500)
        .window(FLOW, at(500 * MS))
        .unwrap()
        .0;
    let carried = 2 * 1502 * 34;
    let grown = carried + carried / 4 + 4 * 1448;
    assert!(w.abs_diff(grown) < grown / 20, "{w} vs {grown}");
    assert!(w < LINE * 3 / 4, "{w} of {LINE}");
}

#[test]
fn a_lone_flow_keeps_its_window_through_a_slow_spell() {
    // The only flow, at 12 Mbit/s, then at 1.2 (BBR's ProbeRTT, an app
    // that stalled) for 200 ms: its window stays the whole line's, so it
    // refills at once (its window alone bounds what it sends).
    let alone = |f: u64, _| u32::from(f == FLOW);
    assert_eq!(
        two_flows(alone, 200).window(FLOW, at(200 * MS)).unwrap().0,
        LINE
    );
    let slow = |f: u64, ms: u64| u32::from(f == FLOW && (ms < 200 || ms.is_multiple_of(10)));
    assert_eq!(
        two_flows(slow, 420).window(FLOW, at(420 * MS)).unwrap().0,
        LINE
    );
}

#[test]
fn a_flow_that_resumes_after_a_pause_starts_again_at_an_equal_share() {
    // FLOW carries two thirds of the download, pauses from 250 to 370 ms
    // (not a pause: under 200 ms), then from 500 to 900 ms, while B goes
    // on; the download stays full.
    let segments = |f: u64, ms: u64| match f == FLOW {
        true if (250..370).contains(&ms) || (500..900).contains(&ms) => 0,
        true => 2,
        false => 1,
    };
    let at_ms = |ms: u64| two_flows(segments, ms).window(FLOW, at(ms * MS)).unwrap().0;
    assert!(
        at_ms(249).abs_diff(LINE * 2 / 3) < LINE / 20,
        "{}",
        at_ms(249)
    );
    // Back after 120 ms: no fresh start.
    assert_ne!(at_ms(370), LINE / 2);
    // Before it resumes after 400 ms: the window of its last interval,
    // its two thirds; at once an equal share, a half, when it resumes.
    assert!(
        at_ms(899).abs_diff(LINE * 2 / 3) < LINE / 20,
        "{}",
        at_ms(899)
    );
    assert_eq!(at_ms(900), LINE / 2);
    // An interval later, its share again.
    assert!(
        at_ms(1100).abs_diff(LINE * 2 / 3) < LINE / 20,
        "{}",
        at_ms(1100)
    );
}

#[test]
fn flows_that_open_together_on_a_full_download_count_each_other_in_their_equal_share() {
    // B carries the download; two flows open at 300 ms: the first gets
    // half the line's window, the second a third.
    let board = Arc::new(WindowBoard::default());
    let mut d = DownloadWindows::new(Arc::clone(&board));
    let syn_ack = tcp(false, true, 65535, Some(7), 0);
    let seg = tcp(false, false, 65535, None, 1448);
    d.on_packet(&meta(&syn_ack), 100, Some(30 * MS), RATE, true, at(0));
    for ms in 1..=300 {
        d.on_queue(RATE * 3 / 2000, RATE, at(ms * MS));
        d.on_packet(&meta(&seg), 100, None, RATE, true, at(ms * MS));
    }
    d.on_packet(
        &meta(&syn_ack),
        101,
        Some(30 * MS),
        RATE,
        true,
        at(300 * MS),
    );
    d.on_packet(
        &meta(&syn_ack),
        102,
        Some(30 * MS),
        RATE,
        true,
        at(300 * MS),
    );
    assert_eq!(board.window(101, at(300 * MS)).unwrap().0, LINE / 2);
    assert_eq!(board.window(102, at(300 * MS)).unwrap().0, LINE / 3);
}

#[test]
fn nothing_is_lowered_on_an_idle_download_or_without_the_handshake() {
    let (board, mut d, mut u) = pair();
    let ack = tcp(true, false, 0xffff, None, 0);
    // The LAN end's handshake was not seen (the flow predates qosd).
    download(&mut d, Some(7), 580, 0, 250);
    assert_eq!(u.on_lan_packet(&meta(&ack), FLOW, true, at(250 * MS)), None);
    // Seen now; a second after the queue last stood, the download is no
    // longer full and nothing is lowered either.
    lan_syn(&mut u, Some(7), FLOW, true, at(250 * MS));
    assert!(
        u.on_lan_packet(&meta(&ack), FLOW, true, at(260 * MS))
            .is_some()
    );
    assert_eq!(
        u.on_lan_packet(&meta(&ack), FLOW, true, at(1_300 * MS)),
        None
    );
    assert!(!d.full(at(1_300 * MS)));
    // Another flow in the same slot is not this one.
    assert_eq!(board.window(same_slot(), at(260 * MS)), None);
}

#[test]
fn the_scale_applies_only_when_both_ends_sent_the_option() {
    // The far end sent none: windows are in bytes, whatever the LAN's SYN
    // said (RFC 7323: scaling needs both).
    let (board, mut d, mut u) = pair();
    lan_syn(&mut u, Some(7), FLOW, true, at(0));
    download(&mut d, None, 580, 0, 250);
    let (w, scaled) = board.window(FLOW, at(250 * MS)).unwrap();
    assert!(!scaled);
    let ack = tcp(true, false, 0xffff, None, 0);
    let units = u.on_lan_packet(&meta(&ack), FLOW, true, at(250 * MS));
    assert_eq!(
        units.map(u64::from),
        Some(w.min(0xffff)).filter(|&w| w < 0xffff)
    );
    // The LAN end sent none: the same.
    let (board, mut d, mut u) = pair();
    lan_syn(&mut u, None, FLOW, true, at(0));
    nine_others(&mut d);
    download(&mut d, Some(7), 500, 20_000, 150);
    let (w, scaled) = board.window(FLOW, at(150 * MS)).unwrap();
    assert!(scaled && w < 0xffff);
    let units = u
        .on_lan_packet(&meta(&ack), FLOW, true, at(150 * MS))
        .unwrap();
    assert_eq!(u64::from(units), w);
}

#[test]
fn a_new_connection_on_the_same_tuple_starts_afresh() {
    let board = Arc::new(WindowBoard::default());
    let mut d = DownloadWindows::new(Arc::clone(&board));
    download(&mut d, Some(7), 580, 0, 250);
    assert!(board.window(FLOW, at(250 * MS)).is_some());
    // The same SYN-ACK again (same ISN) is the same connection...
    let syn_ack = tcp(false, true, 65535, Some(7), 0);
    d.on_packet(&meta(&syn_ack), FLOW, None, RATE, true, at(255 * MS));
    assert!(board.window(FLOW, at(255 * MS)).is_some());
    // ...another ISN a new one, on a download no longer full.
    let mut again = syn_ack.clone();
    again[38..42].copy_from_slice(&777u32.to_be_bytes());
    d.on_packet(&meta(&again), FLOW, None, RATE, true, at(1_400 * MS));
    assert_eq!(board.window(FLOW, at(260 * MS)), None);
}

/// Runs `d` for `periods` control periods (100 ms) from `t`, the queue
/// at each of `backlogs` every 10 ms.
fn periods(d: &mut DownloadWindows, t: &mut u64, backlogs: &[u64], periods: u64) {
    for _ in 0..periods * 10 {
        for &b in backlogs {
            d.on_queue(b, RATE, at(*t));
        }
        *t += 10 * MS;
    }
}

#[test]
fn the_allowance_grows_when_the_queue_runs_dry_and_shrinks_when_it_stands() {
    let mut d = DownloadWindows::new(Arc::new(WindowBoard::default()));
    let ms = |d: &DownloadWindows| d.allowance().as_millis();
    assert_eq!(ms(&d), 4);
    let mut t = 0;
    let dry = [RATE / 100, 1514];
    // Full, and the queue runs dry every period: 2 ms more at the fifth
    // in a row, and at every fifth after it, up to 60.
    periods(&mut d, &mut t, &dry, 4);
    assert_eq!(ms(&d), 4, "up to four dry periods are BBR draining");
    periods(&mut d, &mut t, &dry, 3);
    assert_eq!(ms(&d), 6, "one step per five dry periods");
    periods(&mut d, &mut t, &dry, 25);
    assert!((14..=16).contains(&ms(&d)), "{}", ms(&d));
    periods(&mut d, &mut t, &dry, 200);
    assert_eq!(ms(&d), 60);
    // A queue that never goes below 2 ms of the line: 1 ms less per
    // period, down to 2.
    periods(&mut d, &mut t, &[RATE / 100, RATE / 400], 5);
    assert!((54..=56).contains(&ms(&d)), "{}", ms(&d));
    periods(&mut d, &mut t, &[RATE / 100], 100);
    assert_eq!(ms(&d), 2);
    // In between (1.5 ms at least, not dry): as it is.
    periods(&mut d, &mut t, &[RATE / 100, RATE * 3 / 2000], 10);
    assert_eq!(ms(&d), 2);
    // A queue over 2 ms for 19 arrivals in 20 that runs dry for the
    // twentieth (BBR's drain phase) stood: 1 ms less per period, not more.
    periods(&mut d, &mut t, &dry, 40);
    let grown = ms(&d);
    assert!((16..=18).contains(&grown), "{grown}");
    let mut mostly = [RATE / 100; 20];
    mostly[19] = 1514;
    periods(&mut d, &mut t, &mostly, 5);
    // (A period is judged at the next one's first arrival: the first of
    // these five judges the last dry one.)
    assert!((grown - 5..=grown - 2).contains(&ms(&d)), "{}", ms(&d));
    // Over 2 ms for eight in ten: not standing, dry.
    let before = ms(&d);
    mostly[15..].fill(1514);
    periods(&mut d, &mut t, &mostly, 6);
    assert!(ms(&d) > before, "{}", ms(&d));
    // Not full (the queue never held 1 ms for over a second): as it is,
    // though dry.
    periods(&mut d, &mut t, &[RATE / 2000, 1514], 12);
    assert!(!d.full(at(t)));
    let before = ms(&d);
    periods(&mut d, &mut t, &[RATE / 2000, 1514], 30);
    assert_eq!(ms(&d), before, "only while full");
}

/// Another flow id in [`FLOW`]'s slot.
fn same_slot() -> u64 {
    (1..u64::MAX)
        .map(|k| FLOW + k)
        .find(|&f| slot_of(f) == slot_of(FLOW) && tag_of(f) != tag_of(FLOW))
        .unwrap()
}

#[test]
fn a_new_flow_does_not_take_the_slot_of_one_that_carries_data() {
    let (board, mut d, mut u) = pair();
    lan_syn(&mut u, Some(7), FLOW, true, at(0));
    download(&mut d, Some(7), 580, 0, 250);
    let before = board.window(FLOW, at(250 * MS)).unwrap();
    // A SYN of another flow in the same slot, both ways (an inbound scan,
    // a new connection of the office): the download keeps its window.
    let other = same_slot();
    let syn = tcp(false, true, 65535, Some(7), 0);
    d.on_packet(&meta(&syn), other, Some(30 * MS), RATE, true, at(250 * MS));
    lan_syn(&mut u, Some(7), other, true, at(250 * MS));
    assert_eq!(board.window(FLOW, at(250 * MS)), Some(before));
    let ack = tcp(true, false, 0xffff, None, 0);
    assert!(
        u.on_lan_packet(&meta(&ack), FLOW, true, at(250 * MS))
            .is_some()
    );
    assert_eq!(
        u.on_lan_packet(&meta(&ack), other, true, at(250 * MS)),
        None
    );
    // Once it has been quiet for two periods (400 ms), the slot is free.
    d.on_packet(&meta(&syn), other, Some(30 * MS), RATE, true, at(900 * MS));
    assert_eq!(board.window(FLOW, at(900 * MS)), None);
}

#[test]
fn a_syn_ack_sent_again_keeps_the_round_trip() {
    let board = Arc::new(WindowBoard::default());
    let mut d = DownloadWindows::new(Arc::clone(&board));
    // The far end's SYN-ACK, timed (30 ms), then the same again (same
    // ISN), which no probe times: the round trip stays, and windows come.
    let syn_ack = tcp(false, true, 65535, Some(7), 0);
    d.on_packet(&meta(&syn_ack), FLOW, Some(30 * MS), RATE, true, at(0));
    d.on_packet(&meta(&syn_ack), FLOW, None, RATE, true, at(MS));
    let seg = tcp(false, false, 65535, None, 1448);
    for i in 0..400u64 {
        let t = 2 * MS + i * MS / 2;
        d.on_queue(RATE * 3 / 2000, RATE, at(t));
        d.on_packet(&meta(&seg), FLOW, None, RATE, true, at(t));
    }
    assert!(board.window(FLOW, at(200 * MS)).is_some());
}

#[test]
fn off_lifts_every_window_and_handshakes_are_followed_meanwhile() {
    let (board, mut d, mut u) = pair();
    // Off: the LAN end's SYN is still read, nothing is lowered.
    lan_syn(&mut u, Some(7), FLOW, false, at(0));
    download(&mut d, Some(7), 580, 0, 250);
    let ack = tcp(true, false, 0xffff, None, 0);
    assert_eq!(
        u.on_lan_packet(&meta(&ack), FLOW, false, at(250 * MS)),
        None
    );
    // On: the scale read while off applies.
    let units = u
        .on_lan_packet(&meta(&ack), FLOW, true, at(250 * MS))
        .unwrap();
    let (w, _) = board.window(FLOW, at(250 * MS)).unwrap();
    assert_eq!(u64::from(units), w.div_ceil(128));
    // Switched off: lifted at once.
    d.off();
    assert_eq!(board.window(FLOW, at(250 * MS)), None);
    assert!(!d.full(at(250 * MS)));
}

#[test]
fn a_single_frame_on_a_slow_line_is_not_a_full_download() {
    // 8 Mbit/s: one 1514-byte frame is 1.5 ms of the line.
    let slow = 1_000_000;
    let mut d = DownloadWindows::new(Arc::new(WindowBoard::default()));
    for i in 0..100u64 {
        d.on_queue(1514, slow, at(i * 10 * MS));
    }
    assert!(!d.full(at(1000 * MS)));
    assert_eq!(d.allowance().as_millis(), 4);
    d.on_queue(3 * 1514, slow, at(1000 * MS));
    assert!(d.full(at(1000 * MS)));
}

#[test]
fn dry_spells_after_the_downloads_end_leave_the_allowance_alone() {
    let mut d = DownloadWindows::new(Arc::new(WindowBoard::default()));
    // Full for a second (the queue at 1.5 ms of the line), then light
    // traffic only: the download counts as full for another second, the
    // queue runs dry, but it is never full in those periods.
    let mut t = 0;
    while t < 1_000 * MS {
        d.on_queue(RATE * 3 / 2000, RATE, at(t));
        t += 5 * MS;
    }
    while t < 3_000 * MS {
        d.on_queue(100, RATE, at(t));
        t += 5 * MS;
    }
    assert_eq!(d.allowance().as_millis(), 4);
}
