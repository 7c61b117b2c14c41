//! Tests of the DNS parser and cache.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use super::cache::SHARDS;
use super::*;
use proptest::prelude::*;

use crate::classify::dpi::Parse;
use crate::classify::dpi::test_util::hex;
use crate::time::Instant;

// anyconnect-vpn.pcap #388, 75.75.75.75:53 -> client: www.outlook.com
// CNAME outlook.office365.com CNAME outlook.ms-acdc.office.com
// CNAME sjc-efz.ms-acdc.office.com, then 4 A records (TTL 48).
const OUTLOOK: &str = "ce5e8180000100070000000003777777076f75746c6f6f6b03636f6d0000010001c00c00050001000000cd0014076f75\
 746c6f6f6b096f6666696365333635c018c02d00050001000000560019076f75746c6f6f6b076d732d61636463066f66\
 66696365c018c04d0005000100000765000a07736a632d65667ac055c072000100010000003000042861de22c0720001\
 000100000030000434600382c072000100010000003000042861dd72c0720001000100000030000434601202";
// anyconnect-vpn.pcap #354: detectportal.firefox.com, 3 CNAMEs, 2 A (TTL 9).
const DETECTPORTAL: &str = "ed16818000010005000000000c646574656374706f7274616c0766697265666f7803636f6d0000010001c00c00050001\
 00000023001e0c646574656374706f7274616c0470726f64066d6f7a617773036e657400c036000500010000000e0028\
 0c646574656374706f7274616c0766697265666f7806636f6d2d763209656467657375697465c04fc060000500010000\
 527a0014056131303839046473636406616b616d6169c04fc09400010001000000090004b8193852c094000100010000\
 00090004b8193833";
// anyconnect-vpn.pcap #20: AAAA query for vco.pandion.viasat.com, NODATA + SOA.
const NODATA: &str = "2cb7818000010000000100000376636f0770616e64696f6e0676696173617403636f6d00001c0001c018000600010000\
 03840045066e732d36333209617773646e732d3135036e65740011617773646e732d686f73746d617374657206616d61\
 7a6f6ec01f0000000100001c20000003840012750000015180";
// dns-google-nsid.pcapng #2: ". NS" answered by 13 NS records + OPT.
const ROOT_NS: &str = "915181a00001000d000000010000020001000002000100008fcd001401610c726f6f742d73657276657273036e657400\
 000002000100008fcd00040162c01e000002000100008fcd00040163c01e000002000100008fcd00040164c01e000002\
 000100008fcd00040165c01e000002000100008fcd00040166c01e000002000100008fcd00040167c01e000002000100\
 008fcd00040168c01e000002000100008fcd00040169c01e000002000100008fcd0004016ac01e000002000100008fcd\
 0004016bc01e000002000100008fcd0004016cc01e000002000100008fcd0004016dc01e000029020000000000000d00\
 0300096770646e732d6d696c";
// dns-google-nsid.pcapng #3: query for www.ntop.org A with EDNS.
const QUERY: &str =
    "4d150120000100000000000103777777046e746f70036f72670000010001000029100000000000000400030000";
// dns-google-nsid.pcapng #6: www.wikipedia.it CNAME b7fd7b.yepa.com CNAME
// d2x2r9xi9rd3sc.cloudfront.net, 4 A records (TTL 60).
const WIKIPEDIA: &str = "ca1181800001000600000001037777770977696b6970656469610269740000010001c00c000500010000025800110662\
 3766643762047965706103636f6d00c02e0005000100000258001f0e64327832723978693972643373630a636c6f7564\
 66726f6e74036e657400c04b000100010000003c00046c9dc21cc04b000100010000003c00046c9dc23ec04b00010001\
 0000003c00046c9dc20bc04b000100010000003c00046c9dc21b000029100000000000000b0003000772332e6d696c31";
// dns-google-nsid.pcapng #8: www.wireshark.org, 3 A records, no CNAME.
const WIRESHARK: &str = "e06f81800001000300000001037777770977697265736861726b036f72670000010001c00c000100010000012c000468\
 1a0af0c00c000100010000012c0004681a0bf0c00c000100010000012c0004ac434b27000029100000000000000b0003\
 000772392e6d696c31";

fn addrs(msg: &[u8]) -> Vec<(IpAddr, u32, String)> {
    let r = parse_response(msg).unwrap();
    r.addresses()
        .map(|a| (a.ip, a.ttl, a.name.to_string()))
        .collect()
}

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn cname_chain_maps_addresses_to_question_name() {
    let msg = hex(OUTLOOK);
    let r = parse_response(&msg).unwrap();
    assert_eq!(r.header.ancount, 7);
    assert_eq!(r.question_name().unwrap().as_str(), "www.outlook.com");
    assert_eq!(r.chain_len, 4);
    let got = addrs(&msg);
    let ips: Vec<_> = got.iter().map(|a| a.0).collect();
    assert_eq!(
        ips,
        [
            v4("40.97.222.34"),
            v4("52.96.3.130"),
            v4("40.97.221.114"),
            v4("52.96.18.2")
        ]
    );
    for (_, ttl, name) in &got {
        assert_eq!(name, "www.outlook.com");
        assert_eq!(*ttl, 48); // min(205, 86, 1893, 48)
    }
}

#[test]
fn chain_ttl_is_the_minimum_along_the_path() {
    // CNAME TTLs 35, 14, 21114; A TTL 9.
    let got = addrs(&hex(DETECTPORTAL));
    assert_eq!(
        got,
        vec![
            (v4("184.25.56.82"), 9, "detectportal.firefox.com".into()),
            (v4("184.25.56.51"), 9, "detectportal.firefox.com".into()),
        ]
    );
    let got = addrs(&hex(WIKIPEDIA));
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|a| a.1 == 60 && a.2 == "www.wikipedia.it"));
}

#[test]
fn plain_a_records() {
    let got = addrs(&hex(WIRESHARK));
    assert_eq!(
        got,
        vec![
            (v4("104.26.10.240"), 300, "www.wireshark.org".into()),
            (v4("104.26.11.240"), 300, "www.wireshark.org".into()),
            (v4("172.67.75.39"), 300, "www.wireshark.org".into()),
        ]
    );
}

#[test]
fn responses_without_addresses() {
    let msg = hex(NODATA);
    let r = parse_response(&msg).unwrap();
    assert_eq!(r.question.unwrap().qtype, TYPE_AAAA);
    assert_eq!(r.addresses().count(), 0);
    let msg = hex(ROOT_NS);
    let r = parse_response(&msg).unwrap();
    assert_eq!(r.question_name().unwrap().as_str(), "");
    assert_eq!(r.addresses().count(), 0);
}

#[test]
fn query_name_of_a_query() {
    let q = hex(QUERY);
    assert_eq!(query_name(&q).unwrap().as_str(), "www.ntop.org");
    // A query is not a response and a response is not a query.
    assert!(parse_response(&q).is_none());
    assert!(query_name(&hex(WIRESHARK)).is_none());
}

/// Builds a response by hand: header + question + raw answer bytes.
fn build(qname: &[u8], ancount: u16, answers: &[u8]) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1];
    m.extend_from_slice(&ancount.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(qname);
    m.extend_from_slice(&[0, 1, 0, 1]);
    m.extend_from_slice(answers);
    m
}

fn rr(owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut r = owner.to_vec();
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&[0, 1]);
    r.extend_from_slice(&ttl.to_be_bytes());
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    r.extend_from_slice(rdata);
    r
}

const TEAMS: &[u8] = b"\x05Teams\x09Microsoft\x03COM\x00";

#[test]
fn teams_cname_chain_aaaa_and_case() {
    // teams.microsoft.com CNAME x.trafficmanager.net CNAME y.cdn.net,
    // A 52.113.1.1, AAAA 2603:1063::1; plus an unrelated A record.
    let x = b"\x01x\x0etrafficmanager\x03net\x00";
    let y = b"\x01y\x03cdn\x03net\x00";
    let mut ans = rr(&[0xc0, 12], TYPE_CNAME, 300, x);
    let x_off = 12 + TEAMS.len() + 4 + 2 + 10;
    ans.extend(rr(
        &[0xc0 | (x_off >> 8) as u8, x_off as u8],
        TYPE_CNAME,
        100,
        y,
    ));
    let y_off = x_off + x.len() + 2 + 10;
    let y_ptr = [0xc0 | (y_off >> 8) as u8, y_off as u8];
    ans.extend(rr(&y_ptr, TYPE_A, 3600, &[52, 113, 1, 1]));
    let v6: Ipv6Addr = "2603:1063::1".parse().unwrap();
    ans.extend(rr(&y_ptr, TYPE_AAAA, 20, &v6.octets()));
    ans.extend(rr(b"\x05other\x03com\x00", TYPE_A, 3600, &[1, 2, 3, 4]));
    let msg = build(TEAMS, 5, &ans);
    let got = addrs(&msg);
    assert_eq!(
        got,
        vec![
            (v4("52.113.1.1"), 100, "teams.microsoft.com".into()),
            (IpAddr::V6(v6), 20, "teams.microsoft.com".into()),
        ]
    );
}

#[test]
fn out_of_order_chain_is_followed() {
    // A record first, then CNAME y->..., then q CNAME y: records for y
    // appear before the CNAME that names y.
    let y = b"\x01y\x03cdn\x03net\x00";
    let mut ans = rr(y, TYPE_A, 50, &[9, 9, 9, 9]);
    ans.extend(rr(&[0xc0, 12], TYPE_CNAME, 300, y));
    let msg = build(TEAMS, 2, &ans);
    assert_eq!(
        addrs(&msg),
        vec![(v4("9.9.9.9"), 50, "teams.microsoft.com".into())]
    );
}

#[test]
fn cname_loop_terminates() {
    // q CNAME a, a CNAME q.
    let a = b"\x01a\x00";
    let mut ans = rr(&[0xc0, 12], TYPE_CNAME, 300, a);
    let a_off = 12 + TEAMS.len() + 4 + 2 + 10;
    ans.extend(rr(&[0xc0, a_off as u8], TYPE_CNAME, 300, &[0xc0, 12]));
    let msg = build(TEAMS, 2, &ans);
    let r = parse_response(&msg).unwrap();
    assert_eq!(r.chain_len, 2);
    assert_eq!(r.addresses().count(), 0);
}

#[test]
fn compression_loops_and_forward_pointers_are_rejected() {
    // Question name is a pointer to itself.
    let mut m = vec![
        0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1,
    ];
    assert!(parse_response(&m).is_none());
    // Pointer forward (to the label after it).
    m[12..14].copy_from_slice(&[0xc0, 14]);
    m.extend_from_slice(b"\x01a\x00");
    assert!(parse_response(&m).is_none());
    // Two pointers pointing at each other inside answers.
    let ans = [0xc0, 30, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4];
    let mut msg = build(b"\x01q\x00", 1, &ans);
    let off = msg.len();
    msg.extend_from_slice(&[0xc0, (off - 2) as u8]);
    assert_eq!(addrs(&msg), vec![]);
    // Extended label types are rejected.
    let msg = build(b"\x41q\x00", 0, &[]);
    assert!(parse_response(&msg).is_none());
}

#[test]
fn names_longer_than_255_are_rejected() {
    let mut long = Vec::new();
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.push(0); // 5*64 + 1 = 321 bytes
    assert!(parse_response(&build(&long, 0, &[])).is_none());
    // Exactly 255 on the wire: 3*64 + 62 + 1.
    let mut ok = Vec::new();
    for _ in 0..3 {
        ok.push(63);
        ok.extend_from_slice(&[b'b'; 63]);
    }
    ok.push(61);
    ok.extend_from_slice(&[b'c'; 61]);
    ok.push(0);
    assert_eq!(ok.len(), 255);
    let msg = build(&ok, 0, &[]);
    let r = parse_response(&msg).unwrap();
    assert_eq!(r.question_name().unwrap().len(), 253);
    // Long name built through pointers: 4 * 64 + pointer back.
    let mut m = build(&ok, 0, &[]);
    m[7] = 1; // ancount
    m.extend_from_slice(&[1, b'x', 0xc0, 12]); // "x." + 255-byte name
    m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 1, 1, 1]);
    assert_eq!(addrs(&m), vec![]);
}

#[test]
fn unprintable_bytes_are_replaced() {
    let msg = build(b"\x03a.b\x02\x00\xff\x00", 0, &[]);
    let r = parse_response(&msg).unwrap();
    assert_eq!(r.question_name().unwrap().as_str(), "a?b.??");
}

#[test]
fn bogus_counts_and_truncation() {
    let mut msg = hex(OUTLOOK);
    msg[6] = 0xff; // ancount = 0xff07
    msg[4] = 0x00; // qdcount stays 1
    let r = parse_response(&msg).unwrap();
    assert_eq!(r.addresses().count(), 4);
    let mut msg = hex(OUTLOOK);
    msg[5] = 0xff; // qdcount 255: questions run out of bytes
    assert!(parse_response(&msg).is_none());
    // Every truncation: never panics; answers only ever get fewer.
    let full = hex(OUTLOOK);
    for n in 0..full.len() {
        if let Some(r) = parse_response(&full[..n]) {
            assert!(r.addresses().count() <= 4);
        }
    }
    // rcode != 0: no mapping.
    let mut msg = hex(OUTLOOK);
    msg[3] = 0x83;
    assert_eq!(addrs(&msg), vec![]);
}

#[test]
fn dns_over_tcp() {
    let msg = hex(WIRESHARK);
    let mut stream = (msg.len() as u16).to_be_bytes().to_vec();
    stream.extend_from_slice(&msg);
    stream.extend_from_slice(&[0, 5]); // start of a next message
    match parse_response_tcp(&stream) {
        Parse::Found(r) => assert_eq!(r.addresses().count(), 3),
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse_response_tcp(&stream[..1]), Parse::NeedMore));
    assert!(matches!(parse_response_tcp(&stream[..40]), Parse::NeedMore));
    // A query over TCP is not a response.
    let q = hex(QUERY);
    let mut s = (q.len() as u16).to_be_bytes().to_vec();
    s.extend_from_slice(&q);
    assert!(matches!(parse_response_tcp(&s), Parse::NotThis));
    assert!(matches!(
        parse_response_tcp(&[0, 3, 1, 2, 3]),
        Parse::NotThis
    ));
}

fn t(secs: u64) -> Instant {
    Instant::from_nanos(secs * 1_000_000_000)
}

#[test]
fn cache_expires_in_virtual_time_and_clamps_ttl() {
    let c = DnsCache::new(1000);
    let ip = v4("52.113.1.1");
    c.insert(ip, "teams.microsoft.com", 300, t(100));
    assert_eq!(&*c.lookup(ip, t(399)).unwrap(), "teams.microsoft.com");
    assert!(c.lookup(ip, t(400)).is_none());
    // TTL 0 is raised to MIN_TTL.
    c.insert(ip, "a.example", 0, t(1000));
    assert!(c.lookup(ip, t(1029)).is_some());
    assert!(c.lookup(ip, t(1030)).is_none());
    // A huge TTL is capped at MAX_TTL.
    c.insert(ip, "b.example", u32::MAX, t(0));
    assert!(c.lookup(ip, t(86_399)).is_some());
    assert!(c.lookup(ip, t(86_400)).is_none());
    assert_eq!(c.len(), 1);
    assert!(c.lookup(v4("1.1.1.1"), t(0)).is_none());
}

#[test]
fn cache_latest_answer_wins_and_reuses_name() {
    let c = DnsCache::new(10);
    let ip = v4("10.0.0.1");
    c.insert(ip, "a.example", 60, t(0));
    let a1 = c.lookup(ip, t(1)).unwrap();
    c.insert(ip, "a.example", 60, t(2));
    let a2 = c.lookup(ip, t(3)).unwrap();
    assert!(Arc::ptr_eq(&a1, &a2));
    c.insert(ip, "b.example", 60, t(4));
    assert_eq!(&*c.lookup(ip, t(5)).unwrap(), "b.example");
}

#[test]
fn cache_is_bounded_under_a_flood() {
    let c = DnsCache::new(1000);
    let cap = c.capacity();
    assert!((1000..1000 + SHARDS).contains(&cap));
    let hot = v4("52.112.0.1");
    c.insert(hot, "teams.microsoft.com", 3600, t(0));
    for i in 0..100_000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        c.insert(ip, "flood.example", 3600, t(1));
        assert!(c.len() <= cap);
        if i % 16 == 0 {
            // The hot entry is in use: it keeps its place.
            assert!(c.lookup(hot, t(1)).is_some(), "evicted at {i}");
        }
    }
    assert!(c.len() <= cap);
    assert!(c.len() >= cap - SHARDS);
    assert!(c.evictions() >= 100_000 - cap as u64);
    assert_eq!(c.expired_removed(), 0);
}

#[test]
fn cache_prefers_evicting_expired_entries() {
    let c = DnsCache::with_ttl_bounds(16, Duration::from_secs(1), MAX_TTL);
    for i in 0..16u32 {
        c.insert(IpAddr::V4(Ipv4Addr::from(i)), "old.example", 1, t(0));
    }
    for i in 0..64u32 {
        c.insert(
            IpAddr::V4(Ipv4Addr::from(1000 + i)),
            "new.example",
            60,
            t(10),
        );
    }
    assert!(c.len() <= c.capacity());
    assert!(c.expired_removed() > 0);
}

#[test]
fn cache_is_shared_between_threads() {
    let c = Arc::new(DnsCache::new(4096));
    let handles: Vec<_> = (0..4u32)
        .map(|k| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                for i in 0..2000u32 {
                    let ip = IpAddr::V4(Ipv4Addr::from(k << 24 | i));
                    c.insert(ip, "x.example", 60, t(0));
                    let _ = c.lookup(ip, t(1));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(c.len() <= c.capacity());
    assert!(c.len() > 4000);
}

#[test]
fn cache_from_response() {
    let c = DnsCache::new(100);
    let msg = hex(OUTLOOK);
    let r = parse_response(&msg).unwrap();
    assert_eq!(c.insert_response(&r, t(0)), 4);
    assert_eq!(
        &*c.lookup(v4("52.96.18.2"), t(47)).unwrap(),
        "www.outlook.com"
    );
}

fn exercise(b: &[u8]) {
    if let Some(r) = parse_response(b) {
        for a in r.addresses() {
            assert!(a.name.len() <= MAX_NAME_LEN);
        }
    }
    if let Parse::Found(r) = parse_response_tcp(b) {
        let _ = r.addresses().count();
    }
    let _ = query_name(b);
}

proptest! {
    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&b);
    }

    #[test]
    fn cache_random_operations_keep_the_bound(
        ops in proptest::collection::vec((any::<u8>(), any::<u32>(), 0u64..100_000, any::<bool>()), 1..300),
    ) {
        let c = DnsCache::new(32);
        let mut latest = std::collections::HashMap::new();
        let mut clock = 0u64;
        for (k, ttl, dt, is_insert) in ops {
            clock += dt;
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, k));
            let now = t(clock);
            if is_insert {
                c.insert(ip, &format!("h{k}.example"), ttl, now);
                let clamped = u64::from(ttl).clamp(30, 86_400);
                latest.insert(k, clock + clamped);
            } else if let Some(name) = c.lookup(ip, now) {
                // A hit is always the latest name, not yet expired.
                prop_assert_eq!(&*name, format!("h{k}.example"));
                prop_assert!(latest[&k] > clock);
            }
            prop_assert!(c.len() <= c.capacity());
        }
    }

    #[test]
    fn mutated_real_packets_never_panic(
        which in 0usize..5,
        muts in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut b = hex([OUTLOOK, DETECTPORTAL, WIKIPEDIA, ROOT_NS, QUERY][which]);
        for (i, v) in muts {
            let n = b.len();
            b[i % n] = v;
        }
        let n = b.len();
        b.truncate(cut % (n + 1));
        exercise(&b);
    }
}
