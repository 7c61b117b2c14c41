use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use super::events::Sim;
use super::scenario::office;
use super::*;
use crate::config::{CategoryId, load_embedded};
use crate::shaper::{CategoryCounters, DropReason};
use crate::time::Instant;

#[test]
fn office_under_load_protects_voice() {
    let cfg = load_embedded().unwrap();
    let r = run_office(&cfg, Duration::from_secs(20));
    let voice_q = &r.qosd["voice"];
    let voice_f = &r.fifo["voice"];
    // The calls get through with qosd, with little queueing...
    assert!(
        voice_q.delay_p99_ms < 5.0,
        "voice p99 with qosd {} ms",
        voice_q.delay_p99_ms
    );
    assert!(
        voice_q.delivered_bps > 0.95 * voice_q.offered_bps,
        "{voice_q:?}"
    );
    // ...and suffer in the modem's FIFO.
    assert!(
        voice_f.delay_p99_ms > 100.0,
        "voice p99 without qosd {} ms",
        voice_f.delay_p99_ms
    );
    // The link is used: bulk and browsing fill what is left.
    let total: f64 = r.qosd.values().map(|c| c.delivered_bps).sum();
    let link = (cfg.link.upload.bps() + cfg.link.download.bps()) as f64;
    assert!(total > 0.85 * link, "only {total} of {link} delivered");
    // Business gets at least its guarantee in both directions.
    let business = &r.qosd["business"];
    let min_up = cfg.category[cfg.category_id("business").unwrap().index()]
        .min_rate(Direction::Upload, &cfg.link)
        .bps() as f64;
    assert!(
        business.upload.as_ref().unwrap().delivered_bps >= 0.95 * min_up,
        "{business:?}"
    );
    // Every category the office uses shows up.
    for name in [
        "control",
        "voice",
        "video",
        "business",
        "browsing",
        "streaming",
        "bulk",
    ] {
        assert!(
            r.qosd[name].offered_bps > 0.0,
            "no {name} traffic classified"
        );
    }
}

/// Without a line the report's end-to-end counts are the engines' own.
#[test]
fn end_to_end_counts_match_the_engines_without_a_line() {
    let cfg = load_embedded().unwrap();
    let mut sim = Sim::new(
        &cfg,
        |d| Shaper::new(&ShaperConfig::from_config(&cfg, d)),
        office(),
    );
    sim.run(Duration::from_secs(5));
    for (engine, cats) in sim.engines.iter().zip(&sim.tally.cats) {
        for (c, t) in engine.category_counters().iter().zip(cats) {
            assert_eq!(c.arrived.bytes, t.arrived_bytes);
            assert_eq!(c.sent.bytes, t.sent_bytes);
            assert_eq!(c.dropped_total().packets, t.dropped);
            assert_eq!(c.delay_fine, t.delay);
        }
    }
}

// ---- capacity traces ----

fn parse_err(text: &str) -> String {
    LinkTrace::parse("line.csv", text).unwrap_err().to_string()
}

#[test]
fn trace_file_reads_rates_phases_and_its_end() {
    let t = LinkTrace::parse(
        "line.csv",
        "seconds,upload,download\n\
         # the line as measured\n\
         0, 20 Mbit, 50 Mbit, nominal\n\
         20, 6000000, 15 Mbit, drop   # rain\n\
         \n\
         35, 6 Mbit, 15Mbit/s, drop\n\
         50, 20 Mbit, 50 Mbit\n\
         80\n",
    )
    .unwrap();
    assert_eq!(t.length, Duration::from_secs(80));
    assert_eq!(t.rtt, trace::DEFAULT_RTT);
    assert_eq!(t.segments.len(), 4);
    assert_eq!(
        t.rate(Direction::Upload, Duration::from_secs(25)).bps(),
        6_000_000
    );
    assert_eq!(
        t.rate(Direction::Download, Duration::from_secs(79)).bps(),
        50_000_000
    );
    assert_eq!(t.peak(Direction::Download).bps(), 50_000_000);
    assert_eq!(t.lowest(Direction::Upload).bps(), 6_000_000);
    let phases: Vec<_> = t
        .phases(t.length)
        .into_iter()
        .map(|p| (p.name, p.start.as_secs(), p.end.as_secs()))
        .collect();
    assert_eq!(
        phases,
        [
            ("nominal".to_string(), 0, 20),
            ("drop".to_string(), 20, 50),
            ("20 Mbit/50 Mbit #4".to_string(), 50, 80)
        ]
    );
    // A run shorter than the trace cuts it; a longer one stretches the last.
    assert_eq!(t.phases(Duration::from_secs(30)).len(), 2);
    assert_eq!(
        t.phases(Duration::from_secs(100)).last().unwrap().end,
        Duration::from_secs(100)
    );
    // Mean capacity over a stretch that spans segments.
    let mean = t.mean_rate(
        Direction::Upload,
        Duration::from_secs(10),
        Duration::from_secs(30),
    );
    assert!((mean - 13e6).abs() < 1.0, "{mean}");
    // Without an end line the last segment lasts as long as the one before.
    let t = LinkTrace::parse("x", "0,1 Mbit,2 Mbit\n10,2 Mbit,4 Mbit\n").unwrap();
    assert_eq!(t.length, Duration::from_secs(20));
    let t = LinkTrace::parse("x", "0,1 Mbit,2 Mbit\n").unwrap();
    assert_eq!(t.length, Duration::from_secs(60));
}

#[test]
fn trace_file_errors_name_the_file_and_the_line() {
    for (text, want) in [
        (
            "0,20 Mbit,50 Mbit\n10,6 Mbt,15 Mbit\n",
            "line.csv:2: upload: unknown unit \"Mbt\"",
        ),
        ("0,20 Mbit,50 Mbps\n", "line.csv:1: download: unit \"Mbps\""),
        (
            "0,20 Mbit\n",
            "line.csv:1: 2 fields; write seconds,upload,download",
        ),
        (
            "5,20 Mbit,50 Mbit\n",
            "line.csv:1: the first segment starts at 5 s; it must start at 0",
        ),
        (
            "0,1 Mbit,1 Mbit\n10,1 Mbit,1 Mbit\n10,2 Mbit,2 Mbit\n",
            "line.csv:3: time 10 s is not after the previous line's 10 s",
        ),
        (
            "0,1 Mbit,1 Mbit\nten,1 Mbit,1 Mbit\n",
            "line.csv:2: time \"ten\" is not a number of seconds",
        ),
        (
            "0,1 Mbit,1 Mbit\n-3,1 Mbit,1 Mbit\n",
            "line.csv:2: time \"-3\" must be 0 or more seconds",
        ),
        (
            "0,1 kbit,1 Mbit\n",
            "line.csv:1: upload: rate \"1 kbit\" is below the minimum of 8 kbit",
        ),
        (
            "0,1.5,1 Mbit\n",
            "line.csv:1: upload: rate \"1.5\" has no unit",
        ),
        (
            "0,1 Mbit,1 Mbit\n10\n20,1 Mbit,1 Mbit\n",
            "line.csv:3: a segment after the end of the trace (line 2",
        ),
        ("# nothing\n\n", "line.csv: no segment"),
        (
            "0,1 Mbit,1 Mbit\n100000\n",
            "line.csv:2: time \"100000\" is beyond 24 h",
        ),
        (
            "0,1 Mbit,1 Mbit\n80000,1 Mbit,1 Mbit\n",
            "line.csv: the trace lasts 160000 s; at most 24 h",
        ),
    ] {
        let got = parse_err(text);
        assert!(got.starts_with(want), "{text:?}: {got}");
    }
    let missing = LinkTrace::load(std::path::Path::new("/nonexistent/line.csv")).unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("/nonexistent/line.csv: cannot read the trace"),
        "{missing}"
    );
}

#[test]
fn builtin_traces_are_well_formed() {
    for name in trace::BUILTIN {
        let t = LinkTrace::builtin(name).unwrap();
        assert_eq!(t.segments.first().unwrap().start, Duration::ZERO, "{name}");
        assert!(
            t.segments.windows(2).all(|w| w[0].start < w[1].start),
            "{name}"
        );
        assert!(t.segments.last().unwrap().start < t.length, "{name}");
        assert!(t.phases(t.length).len() >= 3, "{name}");
        for d in Direction::BOTH {
            // Every trace loses at least 40 % of its capacity at some point.
            assert!(
                t.lowest(d).bps() * 10 <= t.peak(d).bps() * 6,
                "{name} {d:?}"
            );
        }
    }
    assert_eq!(
        LinkTrace::builtin("vsat").unwrap().rtt,
        Duration::from_millis(600)
    );
    assert!(LinkTrace::builtin("adsl").is_none());
}

// ---- the frames the WAN-delay meter reads ----

/// Every frame a queue was handed: its direction, when, its bytes.
type FrameLog = Rc<RefCell<Vec<(Direction, Instant, Vec<u8>)>>>;

/// A pass-through queue that logs every frame it is handed.
struct Tap {
    inner: Fifo<Frame>,
    log: FrameLog,
    dir: Direction,
}

impl LinkQueue<Frame> for Tap {
    fn enqueue(&mut self, pkt: Frame, category: CategoryId, flow: u32, now: Instant) {
        self.log
            .borrow_mut()
            .push((self.dir, now, pkt.bytes().to_vec()));
        self.inner.enqueue(pkt, category, flow, now);
    }
    fn dequeue(&mut self, now: Instant) -> Option<Frame> {
        self.inner.dequeue(now)
    }
    fn next_wakeup(&self) -> Option<Instant> {
        self.inner.next_wakeup()
    }
    fn drain_dropped<F: FnMut(Frame, DropReason)>(&mut self, f: F) {
        self.inner.drain_dropped(f);
    }
    fn backlog_bytes(&self) -> u64 {
        self.inner.backlog_bytes()
    }
    fn counters(&self) -> &[CategoryCounters] {
        self.inner.counters()
    }
    fn reconfigure_mapped(&mut self, cfg: &ShaperConfig, origin: &[Option<usize>]) {
        self.inner.reconfigure_mapped(cfg, origin);
    }
}

/// A TCP segment as qosd saw it.
#[derive(Debug, Clone, Copy)]
struct Segment {
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    view: crate::wan::tcp::TcpView,
    payload: u32,
}

fn tcp_segment(frame: &[u8]) -> Option<Segment> {
    let ihl = usize::from(frame.get(14)? & 0x0f) * 4;
    if *frame.get(23)? != 6 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]));
    let tcp = frame.get(14 + ihl..)?;
    let doff = usize::from(tcp.get(12)? >> 4) * 4;
    let addr = |at: usize| -> Option<[u8; 4]> { frame.get(at..at + 4)?.try_into().ok() };
    let port = |at: usize| Some(u16::from_be_bytes([*tcp.get(at)?, *tcp.get(at + 1)?]));
    Some(Segment {
        src: (addr(26)?, port(0)?),
        dst: (addr(30)?, port(2)?),
        view: crate::wan::tcp::TcpView::parse(tcp.get(..doff)?)?,
        payload: (total - ihl - doff) as u32,
    })
}

/// Every TCP segment and DNS message of the office, seen where qosd sees
/// them (on a line whose capacity drops, so that segments are lost and
/// sent again), is what a real host would send: a handshake, sequence and
/// acknowledgement numbers that add up, the timestamp option on every
/// segment with each host's clock and the peer's timestamps echoed, DNS
/// answers with their query's id.
#[test]
fn segments_carry_what_the_wan_meter_reads() {
    let cfg = load_embedded().unwrap();
    let trace = LinkTrace::parse(
        "t",
        "0,20 Mbit,50 Mbit\n3,4 Mbit,10 Mbit\n6,20 Mbit,50 Mbit\n8\n",
    )
    .unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let tap = |d| Tap {
        inner: pass_through(&cfg, d),
        log: Rc::clone(&log),
        dir: d,
    };
    let mut sim = Sim::new(&cfg, tap, office()).with_line(&trace, trace.length, [0, 0]);
    sim.run(trace.length);
    let log = log.borrow();

    type Key = (([u8; 4], u16), ([u8; 4], u16));
    let mut first: HashMap<Key, Segment> = HashMap::new();
    let mut tsvals: HashMap<Key, HashSet<u32>> = HashMap::new();
    let mut last_ts: HashMap<Key, u32> = HashMap::new();
    let mut last_ack: HashMap<Key, u32> = HashMap::new();
    let mut sent_end: HashMap<Key, u32> = HashMap::new();
    let (mut segments, mut retransmitted, mut queries, mut answers) = (0, 0, 0, 0);
    let mut ids: HashSet<u16> = HashSet::new();
    for (dir, _, frame) in log.iter() {
        if frame.get(23) == Some(&17) && frame.get(34..36) != frame.get(36..38) {
            let (sport, dport) = (
                u16::from_be_bytes([frame[34], frame[35]]),
                u16::from_be_bytes([frame[36], frame[37]]),
            );
            let dns = &frame[42..];
            let id = u16::from_be_bytes([dns[0], dns[1]]);
            if dport == 53 {
                assert_eq!(*dir, Direction::Upload);
                assert_eq!(dns[2] & 0x80, 0, "a query");
                ids.insert(id);
                queries += 1;
            } else if sport == 53 {
                assert_eq!(dns[2] & 0x80, 0x80, "an answer");
                assert!(ids.contains(&id), "answer {id} to no query");
                answers += 1;
            }
            continue;
        }
        let Some(s) = tcp_segment(frame) else {
            continue;
        };
        segments += 1;
        let key = (s.src, s.dst);
        let back = (s.dst, s.src);
        let (tsval, tsecr) = s.view.timestamps.expect("every segment has timestamps");
        // The handshake comes first, each way.
        let opener = *first.entry(key).or_insert(s);
        if *dir == Direction::Upload {
            assert!(opener.view.syn() && !opener.view.has_ack(), "{opener:?}");
            if s.view.syn() {
                assert_eq!(tsecr, 0, "a SYN echoes nothing");
            }
        } else {
            assert!(opener.view.syn() && opener.view.has_ack(), "{opener:?}");
            let syn = first[&back];
            assert_eq!(opener.view.ack, syn.view.seq.wrapping_add(1));
        }
        // Each host's clock goes forward; echoes are the peer's timestamps.
        if let Some(&t) = last_ts.get(&key) {
            assert!(tsval.wrapping_sub(t) as i32 >= 0, "clock went back");
        }
        last_ts.insert(key, tsval);
        if !s.view.syn() || s.view.has_ack() {
            assert!(
                tsvals.get(&back).is_some_and(|v| v.contains(&tsecr)),
                "{key:?} echoes {tsecr}, which the peer never sent"
            );
        }
        tsvals.entry(key).or_default().insert(tsval);
        // Data: a segment either extends what was sent or repeats part of it.
        let end = s.view.seq.wrapping_add(s.payload);
        match sent_end.get(&key) {
            Some(&e) if s.payload > 0 && (end.wrapping_sub(e) as i32) <= 0 => retransmitted += 1,
            _ => {
                if s.payload > 0 || s.view.syn() {
                    sent_end.insert(key, end.wrapping_add(u32::from(s.view.syn())));
                }
            }
        }
        // Acknowledgements only grow, and never cover unsent bytes.
        if s.view.has_ack() {
            if let Some(&a) = last_ack.get(&key) {
                assert!(s.view.ack.wrapping_sub(a) as i32 >= 0, "ACK went back");
            }
            last_ack.insert(key, s.view.ack);
            let peer_end = sent_end.get(&back).copied().unwrap();
            assert!(
                peer_end.wrapping_sub(s.view.ack) as i32 >= 0,
                "{key:?} acknowledges {} beyond {peer_end}",
                s.view.ack
            );
        }
    }
    // The eight TCP flows opened both ways, data went and lost data went
    // again; the DNS flow was answered.
    assert_eq!(first.len(), 16, "{:?}", first.keys());
    assert!(segments > 10_000, "{segments}");
    assert!(retransmitted > 0, "the drop lost nothing?");
    assert!(
        queries >= 15 && answers >= 15,
        "{queries} queries, {answers} answers"
    );
}

// ---- the runs on a line ----

fn drop_trace() -> LinkTrace {
    LinkTrace::parse(
        "drop.csv",
        "0, 20 Mbit, 50 Mbit, warm-up\n\
         5, 20 Mbit, 50 Mbit, nominal\n\
         20, 6 Mbit, 15 Mbit, adapting\n\
         25, 6 Mbit, 15 Mbit, drop\n\
         45, 20 Mbit, 50 Mbit, recovery\n\
         55, 20 Mbit, 50 Mbit, recovered\n\
         65\n",
    )
    .unwrap()
}

/// The meter reads the simulated traffic: the autorate run gets samples
/// of every kind the office's traffic offers.
#[test]
fn the_wan_meter_reads_the_simulated_office() {
    let cfg = load_embedded().unwrap();
    let trace = LinkTrace::builtin("dsl-evening").unwrap();
    let auto = autorate_config(&fixed_config(&cfg, &trace), &trace);
    let duration = Duration::from_secs(10);
    let mut sim = Sim::new(&auto, |d| shaper(&auto, d), office())
        .with_line(&trace, duration, [0, 0])
        .with_autorate(&auto);
    sim.run(duration);
    let a = sim.autorate().unwrap();
    let samples = a.samples_by_source();
    for s in [
        crate::wan::Source::TcpTimestamp,
        crate::wan::Source::TcpHandshake,
        crate::wan::Source::Dns,
    ] {
        assert!(samples[s.index()] > 0, "no {s:?} samples: {samples:?}");
    }
    for d in Direction::BOTH {
        let st = a.status(d);
        let base = st.baseline.expect("a baseline");
        // The path's round trip is the trace's 30 ms, give or take the
        // timestamp clock's millisecond, serialization, and the wait of
        // a segment whose timestamp is echoed for the next one.
        assert!(
            base >= Duration::from_millis(29) && base <= Duration::from_millis(40),
            "{d:?}: {st:?}"
        );
    }
}

/// The lab test in virtual time: capacity 20/50 -> 6/15 -> 20/50
/// Mbit. At a fixed rate the queue moves into the line's buffer and the
/// calls suffer; with autorate, after 5 s to adapt, they do not, and TCP
/// still uses most of the low capacity, then all of the restored one.
#[test]
fn autorate_follows_a_capacity_drop() {
    // The defaults: the window clamp and the ISP-queue guard on.
    let cfg = load_embedded().unwrap();
    let trace = drop_trace();
    let r = run_link(&cfg, &trace, trace.length);
    let phases: BTreeMap<&str, &PhaseReport> = r
        .phases
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.name.as_str(), p))
        .collect();
    let (nominal, drop, recovered) = (phases["nominal"], phases["drop"], phases["recovered"]);
    let show = |p: &PhaseReport| {
        format!(
            "{}: voice p99 fifo {:.1} fixed {:.1} autorate {:.1} ms; autorate used {:.2}/{:.2}",
            p.name,
            p.fifo.voice_p99_ms,
            p.qosd.voice_p99_ms,
            p.autorate.voice_p99_ms,
            p.autorate.upload_used,
            p.autorate.download_used
        )
    };
    let all = format!("{}\n{}\n{}", show(nominal), show(drop), show(recovered));
    // At a fixed rate the drop bloats the line (so this test can fail)...
    assert!(
        drop.qosd.voice_p99_ms > nominal.qosd.voice_p99_ms + 100.0,
        "{all}"
    );
    // ...with autorate the calls keep most of their nominal delay...
    assert!(
        drop.autorate.voice_p99_ms < drop.qosd.voice_p99_ms / 10.0,
        "{all}"
    );
    assert!(
        drop.autorate.voice_p99_ms < nominal.autorate.voice_p99_ms + 50.0,
        "{all}"
    );
    // ...and TCP still uses most of the capacity left...
    assert!(drop.autorate.upload_used >= 0.6, "{all}");
    assert!(drop.autorate.download_used >= 0.6, "{all}");
    // ...and all of it again within 10 s of its return.
    assert!(recovered.autorate.upload_used >= 0.8, "{all}");
    // Download 0.7, not 0.8: with stretch ACKs (issue 20) the senders'
    // bursts queue at the ISP even at the full rate, autorate reads that as
    // WAN delay and keeps the download rate lower (0.74-0.79 of the line
    // in every phase, not only after the drop).
    assert!(recovered.autorate.download_used >= 0.7, "{all}");
    assert!(recovered.autorate.voice_p99_ms < 15.0, "{all}");
}

/// Issue 13's acceptance bound in the simulator: during the drop (after
/// 5 s to adapt) the calls' delay p99 within 15 ms of the nominal phase's.
#[test]
fn autorate_keeps_voice_within_15ms_during_a_drop() {
    let cfg = load_embedded().unwrap();
    let trace = drop_trace();
    let r = run_link(&cfg, &trace, trace.length);
    let phases = r.phases.unwrap();
    let p = |name: &str| {
        phases
            .iter()
            .find(|p| p.name == name)
            .unwrap()
            .autorate
            .clone()
    };
    let (nominal, drop) = (p("nominal"), p("drop"));
    assert!(
        drop.voice_p99_ms <= nominal.voice_p99_ms + 15.0,
        "drop {drop:?}\nnominal {nominal:?}"
    );
}

#[test]
fn json_gains_autorate_and_phases_only_with_a_trace() {
    let cfg = load_embedded().unwrap();
    let plain = serde_json::to_value(run_office(&cfg, Duration::from_secs(2))).unwrap();
    let keys: Vec<&str> = plain
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["fifo", "link", "qosd"]);
    assert!(plain["link"].get("trace").is_none());

    let trace = LinkTrace::parse("t.csv", "0,20 Mbit,50 Mbit,a\n2,6 Mbit,15 Mbit,b\n4\n").unwrap();
    let v = serde_json::to_value(run_link(&cfg, &trace, trace.length)).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    // "outside" came after the others (issue 20): keys are only ever added.
    assert_eq!(
        keys,
        ["autorate", "fifo", "link", "outside", "phases", "qosd"]
    );
    for run in ["qosd", "autorate", "fifo"] {
        for d in ["upload", "download"] {
            let w = &v["outside"][run][d];
            assert!(w["p99_ms"].is_number() && w["mean_ms"].is_number(), "{w}");
        }
        let voice = &v[run]["voice"];
        for k in ["outside_p99_ms", "outside_mean_ms"] {
            assert!(voice[k].is_number(), "{run}.voice.{k}: {voice}");
            assert!(voice["download"][k].is_number(), "{run}: {voice}");
        }
    }
    // Without a line there is no outside to speak of.
    assert!(plain["qosd"]["voice"].get("outside_p99_ms").is_none());
    // "autorate" has the shape of "qosd": the same categories, the same fields.
    let names =
        |run: &str| -> Vec<String> { v[run].as_object().unwrap().keys().cloned().collect() };
    assert_eq!(names("autorate"), names("qosd"));
    let fields = |run: &str| -> Vec<String> {
        v[run]["voice"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(fields("autorate"), fields("qosd"));
    assert_eq!(v["link"]["trace"]["name"], "t.csv");
    assert_eq!(v["link"]["upload_bps"], 19_000_000);
    assert_eq!(v["link"]["download_bps"], 46_000_000);
    let phases = v["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2);
    assert_eq!(phases[1]["name"], "b");
    assert_eq!(phases[1]["capacity_download_bps"], 15e6);
    for run in ["fifo", "qosd", "autorate"] {
        let p = &phases[0][run];
        for k in ["voice_p99_ms", "upload_used", "download_used"] {
            assert!(p[k].is_number(), "{run}.{k}: {p}");
        }
        assert_eq!(
            p.get("upload_rate_bps").is_some(),
            run != "fifo",
            "{run}: {p}"
        );
    }
    assert_eq!(phases[0]["qosd"]["download_rate_bps"], 46e6);
    for k in [
        "outside_upload_p99_ms",
        "outside_upload_mean_ms",
        "outside_download_p99_ms",
        "outside_download_mean_ms",
    ] {
        assert!(phases[0]["qosd"][k].is_number(), "{k}");
    }
}

// ---- the queue outside qosd ----

/// `n` paced streams, each 1200-byte RTP packets every millisecond both
/// ways (about 10 Mbit/s each): a load with no bursts of its own, so the
/// only queue outside qosd is the one a line slower than the load makes.
fn paced(n: u8) -> Vec<super::scenario::SimFlow> {
    let mut flows = office();
    let template = flows
        .iter()
        .find(|f| matches!(f.kind, super::scenario::Kind::Call { .. }))
        .unwrap()
        .clone();
    flows.clear();
    for i in 0..n {
        let mut f = template.clone();
        f.client = ([192, 168, 1, 70 + i], 30000 + 2 * u16::from(i));
        f.server = ([198, 51, 100, 10 + i], 40000 + 2 * u16::from(i));
        f.kind = super::scenario::Kind::Call {
            interval: Duration::from_millis(1),
            payload: 1200,
            pt: 96,
        };
        flows.push(f);
    }
    flows
}

/// The report keeps the time in the line's buffer (outside qosd) apart:
/// ~0 while the line is faster than the load, and most of the delay once
/// it is slower than the load and than qosd's download rate, the queue
/// forming at the ISP, before qosd.
#[test]
fn report_measures_the_download_queue_outside_qosd() {
    let cfg = load_embedded().unwrap();
    let trace = LinkTrace::parse(
        "fall.csv",
        "0, 20 Mbit, 50 Mbit, above\n2, 20 Mbit, 8 Mbit, below\n4\n",
    )
    .unwrap();
    let fixed = fixed_config(&cfg, &trace);
    let auto = autorate_config(&fixed, &trace);
    let tally = on_line(
        Sim::new(&fixed, |d| shaper(&fixed, d), paced(1)),
        &fixed,
        &trace,
        trace.length,
    );
    let runs = report::Runs {
        qosd: &tally,
        autorate: &tally,
        fifo: &tally,
    };
    let r = report::link_report(&fixed, &auto, &trace, trace.length, runs);
    let phases = r.phases.as_ref().unwrap();
    let (above, below) = (&phases[0].qosd, &phases[1].qosd);
    // 1242-byte frames, 1 ms apart, at 50 Mbit: 0.2 ms on the wire, no wait.
    assert!(above.outside_download_p99_ms < 0.1, "{above:?}");
    // About 10 Mbit/s into 8: the ISP's buffer grows by 2 Mbit a second.
    assert!(below.outside_download_p99_ms > 100.0, "{below:?}");
    assert!(
        below.outside_download_mean_ms > 20.0
            && below.outside_download_mean_ms < below.outside_download_p99_ms,
        "{below:?}"
    );
    // qosd's own queue stays empty (46 Mbit > 8): the delay is all outside.
    let out = r.outside.as_ref().unwrap();
    let streams = r
        .qosd
        .values()
        .filter_map(|c| c.download.as_deref())
        .find(|c| c.delivered_bps > 1e6)
        .unwrap();
    let outside = streams.outside_p99_ms.unwrap();
    assert!(
        (outside - streams.delay_p99_ms).abs() <= 0.05 * streams.delay_p99_ms,
        "{streams:?}"
    );
    assert!(
        (out.qosd.download.p99_ms - outside).abs() <= 0.05 * outside,
        "{out:?}"
    );
    // Upload runs at 10 Mbit on a 20 Mbit line: nothing waits outside.
    assert!(out.qosd.upload.p99_ms < 0.1, "{out:?}");
    let table = r.to_table();
    assert!(table.contains("outside qosd p99"), "{table}");
}

/// The steady lab line in virtual time: 20/50 Mbit, qosd at
/// 19/47, 30 ms base round trip, the office under load. Receivers' stretch
/// ACKs make the senders burst faster than the line drains, so a queue
/// forms at the ISP, outside qosd, though qosd shapes below the line's
/// capacity; with an ACK per two segments it all but vanishes.
#[test]
fn stretch_acks_queue_at_the_isp_on_a_steady_line() {
    let mut cfg = load_embedded().unwrap();
    cfg.link.upload = Rate::from_bps(19_000_000);
    cfg.link.download = Rate::from_bps(47_000_000);
    // The model, not what answers it (the next tests).
    cfg.link.isp_queue_guard = false;
    cfg.link.window_clamp = false;
    let trace = LinkTrace::parse(
        "steady.csv",
        "0, 20 Mbit, 50 Mbit, warm-up\n3, 20 Mbit, 50 Mbit, steady\n7\n",
    )
    .unwrap();
    let steady = |sim: Sim<Shaper<Frame>>| {
        let t = on_line(sim, &cfg, &trace, trace.length);
        let p = t.phases.get(1).unwrap();
        let [_, down] = &p.outside;
        let ms = |d: Option<Duration>| d.unwrap_or_default().as_secs_f64() * 1e3;
        let used = p.line_bytes[1] as f64 * 8.0 / 4.0 / 50e6;
        (ms(down.p99()), ms(down.mean()), used)
    };
    let (p99, mean, used) = steady(Sim::new(&cfg, |d| shaper(&cfg, d), office()));
    let (p99_every2, _, _) =
        steady(Sim::new(&cfg, |d| shaper(&cfg, d), office()).without_stretch_acks());
    let all = format!(
        "outside download p99 {p99:.1} ms, mean {mean:.1} ms, line used {used:.2}; \
         an ACK per two segments: p99 {p99_every2:.1} ms"
    );
    // Measured: p99 12-20 ms per half second, about 15 over the phase.
    assert!(p99 > 8.0, "{all}");
    assert!(p99 > 2.0 * p99_every2, "{all}");
    // The bursts cost no throughput: qosd still fills its 47 of the 50.
    assert!(used > 0.85, "{all}");
}

/// The steady 20/50 line of the issue with qosd at 19/47 and the guard
/// and the clamp as asked, over its 6 s steady phase: the download queue
/// outside qosd, p99 and mean (ms), and the share of the line's download
/// used.
fn steady_download(guard: bool, clamp: bool) -> (f64, f64, f64) {
    let trace = LinkTrace::parse(
        "steady.csv",
        "0, 20 Mbit, 50 Mbit, warm-up\n3, 20 Mbit, 50 Mbit, steady\n9\n",
    )
    .unwrap();
    let mut cfg = load_embedded().unwrap();
    cfg.link.upload = Rate::from_bps(19_000_000);
    cfg.link.download = Rate::from_bps(47_000_000);
    cfg.link.isp_queue_guard = guard;
    cfg.link.window_clamp = clamp;
    let sim = Sim::new(&cfg, |d| shaper(&cfg, d), office());
    let t = on_line(sim, &cfg, &trace, trace.length);
    let p = t.phases.get(1).unwrap();
    let [_, down] = &p.outside;
    let ms = |d: Option<Duration>| d.unwrap_or_default().as_secs_f64() * 1e3;
    let used = p.line_bytes[1] as f64 * 8.0 / 6.0 / 50e6;
    (ms(down.p99()), ms(down.mean()), used)
}

#[test]
fn the_isp_queue_guard_shortens_the_download_queue_outside_qosd() {
    // The guard alone (the clamp: the next test).
    let (p99, mean, used) = steady_download(true, false);
    let (p99_off, mean_off, used_off) = steady_download(false, false);
    let all = format!(
        "outside download with the guard: p99 {p99:.1} ms, mean {mean:.1} ms, line used {used:.2}; \
         without: p99 {p99_off:.1} ms, mean {mean_off:.1} ms, line used {used_off:.2}"
    );
    eprintln!("{all}");
    assert!(mean < 0.7 * mean_off, "{all}");
    assert!(p99 < p99_off, "{all}");
    // The downloads keep 85 % of qosd's 47 Mbit/s (0.8 of the line).
    assert!(used > 0.8, "{all}");
}

/// The same line with the download window clamp. The receivers' stretch
/// ACKs (5-30 segments held) make the senders burst whatever their window,
/// and a window that leaves room for only a few milliseconds of queue
/// over the round trip qosd measures would starve them: with a fixed 4 ms
/// allowance the download used 0.80 of the line instead of 0.94. The
/// allowance adapts (the queue ran dry: more room), so the clamp costs
/// no throughput and adds no queue outside qosd here; what it bounds,
/// senders that keep more in flight than the line needs whatever qosd
/// drops (BBRv1), this model's CUBIC senders do not do (the lab test
/// `lab_isp_queue` has them).
#[test]
fn the_window_clamp_adapts_to_stretch_acks_and_costs_no_throughput() {
    let (p99, mean, used) = steady_download(false, true);
    let (p99_off, mean_off, used_off) = steady_download(false, false);
    let all = format!(
        "outside download with the clamp: p99 {p99:.1} ms, mean {mean:.2} ms, line used {used:.2}; \
         without: p99 {p99_off:.1} ms, mean {mean_off:.2} ms, line used {used_off:.2}"
    );
    eprintln!("{all}");
    assert!(used > 0.9 && used > used_off - 0.02, "{all}");
    assert!(mean < mean_off * 1.1 && p99 < p99_off + 1.0, "{all}");
    // And with the guard as well, as qosd ships: the clamp costs nothing
    // beside what the guard costs here (its drops for the stretch ACKs'
    // bursts; see the previous test), and still keeps 85 % of qosd's 47
    // Mbit/s (0.8 of the line).
    let (p99, mean, used) = steady_download(true, true);
    let (_, mean_guard, used_guard) = steady_download(true, false);
    let all = format!(
        "{all}; with the clamp and the guard: p99 {p99:.1} ms, mean {mean:.2} ms, line used \
         {used:.2}; the guard alone: mean {mean_guard:.2} ms, line used {used_guard:.2}"
    );
    eprintln!("{all}");
    assert!(used > 0.8 && used > used_guard - 0.02, "{all}");
    assert!(mean < mean_guard * 1.1 && p99 < p99_off, "{all}");
}
