//! Protocol discovery, as Cisco NBAR2 does it: the bytes of the flows
//! qosd could not name (no app recognised), grouped by the host name's
//! registrable domain when a name was learned, else by protocol and server
//! port, so that an admin extends the catalog from what the office really
//! sends (`/api/v1/unknown`, `qosd top`, `qosd classify`).
//!
//! Computed in the control plane, never per packet: the daemon walks the
//! flow table once a second ([`Discovery::update`]); `qosd classify` hands
//! its flows to [`group`] at the end of the capture. Both go through one
//! [`UnknownTable`], bounded to [`TABLE_CAPACITY`] keys.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::config::{Direction, Protocol};
use crate::engine::Shared;
use crate::time::Instant;

/// The most keys a discovery table holds: when a new key arrives in a full
/// table, the one with the fewest bytes goes (or the new key itself, if it
/// has fewer still). An office's unknown traffic is a long tail; its head,
/// what the admin looks for, stays.
pub const TABLE_CAPACITY: usize = 1024;

/// The most flows [`Discovery`] remembers the counted bytes of. Far above
/// what an office's table holds of unknown flows at once; past it a flow
/// is counted later, once a remembered one has left (never twice).
pub const MAX_REMEMBERED_FLOWS: usize = 1 << 20;

/// How long a flow still being inspected (not settled) and without an app
/// waits before its bytes count as unknown: most are named by their first
/// packets (the TLS ClientHello arrives within a round trip or two), and
/// counting them at once would file their handshakes under `tcp/443`. One
/// that is still pending after this is counted (short flows that never
/// settle stay in the table for their idle timeout, far longer).
pub const PENDING_GRACE_NS: u64 = 2_000_000_000;

/// Second-level labels under which registries sell names, under a
/// two-letter country code (`example.co.uk`, `example.com.au`).
const SHORT_SECOND_LEVELS: [&str; 7] = ["co", "com", "net", "org", "ac", "gov", "edu"];

/// The part of `host` an organisation registers, approximately: the last
/// two labels (`cdn.example.com` -> `example.com`), or the last three when
/// the second-to-last is a short second level (co, com, net, org, ac, gov,
/// edu) under a two-letter top level (`cdn.example.co.uk` ->
/// `example.co.uk`). Not the Public Suffix List (thousands of rules qosd
/// does not carry): `foo.blogspot.com` reads as `blogspot.com`, which is
/// what a catalog's `*.blogspot.com` pattern would match anyway.
///
/// Lower-cased, trailing dots dropped; an IP address (bracketed or not)
/// is its own key, and a single label (`printer`) too. `None` for an empty
/// name, which groups by port instead.
pub fn registrable_suffix(host: &str) -> Option<String> {
    let name = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(&name);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
    let keep = match labels.as_slice() {
        [] => return None,
        [.., second, top] if top.len() == 2 && SHORT_SECOND_LEVELS.contains(second) => 3,
        _ => 2,
    };
    let from = labels.len().saturating_sub(keep);
    Some(labels.get(from..).unwrap_or_default().join("."))
}

/// What a discovery key groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// The registrable domain of the host name learned (SNI, HTTP Host,
    /// DNS).
    Host,
    /// Protocol and server port: no name was learned.
    Port,
}

/// A discovery key: a registrable domain, or a protocol and server port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UnknownKey {
    /// `example.co.uk`.
    Host(Box<str>),
    /// `udp/3478` (protocol number, server port).
    Port(u8, u16),
}

impl UnknownKey {
    /// The key of a flow with host name `host` (if learned), protocol
    /// `protocol` and server port `server_port`.
    pub fn of(host: Option<&str>, protocol: u8, server_port: u16) -> Self {
        match host.and_then(registrable_suffix) {
            Some(h) => UnknownKey::Host(h.into()),
            None => UnknownKey::Port(protocol, server_port),
        }
    }

    /// Host or port.
    pub fn kind(&self) -> KeyKind {
        match self {
            UnknownKey::Host(_) => KeyKind::Host,
            UnknownKey::Port(..) => KeyKind::Port,
        }
    }
}

impl std::fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnknownKey::Host(h) => f.write_str(h),
            // ICMP and the like have no port: the protocol alone.
            UnknownKey::Port(p, 0) => write!(f, "{}", Protocol(*p)),
            UnknownKey::Port(p, port) => write!(f, "{}/{port}", Protocol(*p)),
        }
    }
}

/// One flow without an app, as discovery sees it: what [`group`] and
/// [`UnknownTable::add`] take.
#[derive(Debug, Clone, Copy)]
pub struct UnknownFlow<'a> {
    /// The host name learned, if any.
    pub host: Option<&'a str>,
    /// IP protocol number.
    pub protocol: u8,
    /// The server (the side that did not open the flow): its address and
    /// port, the example of a port key.
    pub server: SocketAddr,
    /// Bytes from the LAN to the Internet.
    pub upload: u64,
    /// Bytes from the Internet to the LAN.
    pub download: u64,
}

/// One key of the discovery table, as the API, `qosd top` and
/// `qosd classify --json --unknown` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownEntry {
    /// `example.co.uk` or `udp/3478`.
    pub key: String,
    /// What the key groups by.
    pub kind: KeyKind,
    /// Bytes both ways.
    pub bytes: u64,
    /// Bytes from the LAN to the Internet.
    pub upload_bytes: u64,
    /// Bytes from the Internet to the LAN.
    pub download_bytes: u64,
    /// Flows counted under the key.
    pub flows: u64,
    /// The first full host name seen under a host key
    /// (`cdn.example.co.uk`), the first server address under a port key
    /// (`192.0.2.7:3478`).
    pub example: String,
}

/// The top keys and the total: the body of `GET /api/v1/unknown`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownReport {
    /// The keys with the most bytes, most first (among equals by key).
    pub unknown: Vec<UnknownEntry>,
    /// Bytes of all unknown flows counted, keys evicted from the table
    /// included: what the list is a part of.
    pub total_bytes: u64,
}

#[derive(Debug, Clone, Default)]
struct Counts {
    upload: u64,
    download: u64,
    flows: u64,
    example: String,
}

impl Counts {
    fn bytes(&self) -> u64 {
        self.upload.saturating_add(self.download)
    }
}

/// Bytes of unknown flows by key, at most `capacity` keys (cumulative: a
/// flow that expired keeps its bytes here).
#[derive(Debug, Clone)]
pub struct UnknownTable {
    capacity: usize,
    keys: HashMap<UnknownKey, Counts>,
    total: u64,
}

impl Default for UnknownTable {
    fn default() -> Self {
        Self::new(TABLE_CAPACITY)
    }
}

impl UnknownTable {
    /// An empty table of at most `capacity` keys (at least one).
    pub fn new(capacity: usize) -> Self {
        UnknownTable {
            capacity: capacity.max(1),
            keys: HashMap::new(),
            total: 0,
        }
    }

    /// Keys held now (never more than the capacity).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Counts `upload` and `download` more bytes of a flow under `key`;
    /// `new_flow`: the flow was not counted before (its first bytes).
    /// `example` gives the key's example when the key is new.
    pub fn add(
        &mut self,
        key: UnknownKey,
        example: impl FnOnce() -> String,
        upload: u64,
        download: u64,
        new_flow: bool,
    ) {
        let bytes = upload.saturating_add(download);
        self.total = self.total.saturating_add(bytes);
        if let Some(c) = self.keys.get_mut(&key) {
            c.upload = c.upload.saturating_add(upload);
            c.download = c.download.saturating_add(download);
            c.flows += u64::from(new_flow);
            return;
        }
        if self.keys.len() >= self.capacity {
            // Full: the smallest key goes, unless the new one is smaller
            // still (a scan of the table: a new key in a full table, at
            // most once per key a second).
            let smallest = self
                .keys
                .iter()
                .min_by(|a, b| {
                    a.1.bytes()
                        .cmp(&b.1.bytes())
                        .then_with(|| b.0.cmp_text(a.0))
                })
                .map(|(k, c)| (k.clone(), c.bytes()));
            match smallest {
                Some((k, least)) if least < bytes => {
                    self.keys.remove(&k);
                }
                _ => return,
            }
        }
        self.keys.insert(
            key,
            Counts {
                upload,
                download,
                flows: u64::from(new_flow),
                example: example(),
            },
        );
    }

    /// Counts a whole flow (its first bytes: a new flow under its key).
    pub fn add_flow(&mut self, f: &UnknownFlow<'_>) {
        let key = UnknownKey::of(f.host, f.protocol, f.server.port());
        let example = || example_of(f.host, f.server);
        self.add(key, example, f.upload, f.download, true);
    }

    /// The `n` keys with the most bytes, most first, and the total.
    pub fn top(&self, n: usize) -> UnknownReport {
        let mut list: Vec<(&UnknownKey, &Counts)> = self.keys.iter().collect();
        list.sort_by(|a, b| {
            b.1.bytes()
                .cmp(&a.1.bytes())
                .then_with(|| a.0.cmp_text(b.0))
        });
        list.truncate(n);
        UnknownReport {
            unknown: list
                .into_iter()
                .map(|(k, c)| UnknownEntry {
                    key: k.to_string(),
                    kind: k.kind(),
                    bytes: c.bytes(),
                    upload_bytes: c.upload,
                    download_bytes: c.download,
                    flows: c.flows,
                    example: c.example.clone(),
                })
                .collect(),
            total_bytes: self.total,
        }
    }
}

impl UnknownKey {
    /// A total order for ties: by kind (hosts first), then by text.
    fn cmp_text(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (UnknownKey::Host(a), UnknownKey::Host(b)) => a.cmp(b),
            (UnknownKey::Host(_), UnknownKey::Port(..)) => std::cmp::Ordering::Less,
            (UnknownKey::Port(..), UnknownKey::Host(_)) => std::cmp::Ordering::Greater,
            (UnknownKey::Port(p, a), UnknownKey::Port(q, b)) => (p, a).cmp(&(q, b)),
        }
    }
}

/// The example of a key: the full host name, else the server's address.
fn example_of(host: Option<&str>, server: SocketAddr) -> String {
    match host.map(|h| h.trim().trim_end_matches('.')) {
        Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
        _ => server.to_string(),
    }
}

/// Groups whole flows (`qosd classify`: the capture is over) into the top
/// `n` keys of a [`TABLE_CAPACITY`] table.
pub fn group<'a>(flows: impl IntoIterator<Item = UnknownFlow<'a>>, n: usize) -> UnknownReport {
    let mut table = UnknownTable::default();
    for f in flows {
        table.add_flow(&f);
    }
    table.top(n)
}

/// An address of a flow key (IPv4-mapped addresses as IPv4).
pub fn key_address(a: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The daemon's discovery: the cumulative table, and what it already
/// counted of each flow.
///
/// Counting: once a second (and before each API answer) every flow in the
/// table without an app is visited and the bytes it carried since the last
/// visit (by flow id, [`MAX_REMEMBERED_FLOWS`] at most) are added under its
/// key; a flow not seen before counts from zero. A flow leaves the table
/// by its idle timeout (no bytes since well over a second: nothing lost)
/// or by eviction from a full table (at most its last second lost). A
/// remembered flow is forgotten only when it leaves the table, so one
/// that is named for a while (a reload) and then unknown again is not
/// counted twice; a connection reusing a flow's entry (its counters
/// restart lower) counts from zero. A flow still pending waits
/// [`PENDING_GRACE_NS`]; its bytes since then are counted under the key
/// of the moment (a port until its name is learned).
#[derive(Debug, Default)]
pub struct Discovery {
    table: UnknownTable,
    /// Flow id -> bytes (upload, download) counted so far.
    counted: HashMap<u64, (u64, u64)>,
}

impl Discovery {
    /// Counts what the flows of `shared` without an app carried since the
    /// last update; `now` dates the pending grace. Visits the whole flow
    /// table (and locks each flow without an app briefly): not on a thread
    /// that must stay responsive.
    pub fn update(&mut self, shared: &Shared, now: Instant) {
        let mut next: HashMap<u64, (u64, u64)> = HashMap::with_capacity(self.counted.len());
        let table = &mut self.table;
        let counted = &self.counted;
        shared.table.for_each(|k, f| {
            let id = f.id();
            let before = counted.get(&id).copied();
            if f.value.app().is_some() {
                // Named now: remembered until it leaves, not counted.
                if let Some(b) = before {
                    next.insert(id, b);
                }
                return;
            }
            let class = f.value.lock();
            if class.app.is_some()
                || (!class.settled && now.nanos_since(f.first_seen()) < PENDING_GRACE_NS)
            {
                if let Some(b) = before {
                    next.insert(id, b);
                }
                return;
            }
            if before.is_none() && next.len() >= MAX_REMEMBERED_FLOWS {
                return;
            }
            let (up, down) = (f.bytes(Direction::Upload), f.bytes(Direction::Download));
            // Lower than counted: the entry's counters restarted with a new
            // connection, which counts from zero.
            let (du, dd) = match before {
                Some((bu, bd)) if up >= bu && down >= bd => (up - bu, down - bd),
                _ => (up, down),
            };
            next.insert(id, (up, down));
            if du == 0 && dd == 0 && before.is_some() {
                return;
            }
            let (addr, port) = k.endpoint(f.initiator().other());
            let server = SocketAddr::new(key_address(addr), port);
            let host = class.host.as_deref();
            let key = UnknownKey::of(host, k.protocol, port);
            table.add(key, || example_of(host, server), du, dd, before.is_none());
        });
        self.counted = next;
    }

    /// The `n` keys with the most bytes and the total.
    pub fn top(&self, n: usize) -> UnknownReport {
        self.table.top(n)
    }

    /// Keys held now.
    pub fn keys(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_of_names_of_every_shape() {
        let s = |h: &str| registrable_suffix(h);
        assert_eq!(s("cdn.example.com").as_deref(), Some("example.com"));
        assert_eq!(s("example.com").as_deref(), Some("example.com"));
        assert_eq!(s("a.b.c.example.net").as_deref(), Some("example.net"));
        assert_eq!(s("cdn.example.co.uk").as_deref(), Some("example.co.uk"));
        assert_eq!(s("www.example.com.au").as_deref(), Some("example.com.au"));
        assert_eq!(s("x.uni.ac.jp").as_deref(), Some("uni.ac.jp"));
        // A long top level: "co" is a name there, not a second level.
        assert_eq!(s("cdn.co.museum").as_deref(), Some("co.museum"));
        // Two labels whose first is a short second level: kept whole.
        assert_eq!(s("co.uk").as_deref(), Some("co.uk"));
        assert_eq!(s("CDN.Example.COM.").as_deref(), Some("example.com"));
        assert_eq!(s("example.com..").as_deref(), Some("example.com"));
        assert_eq!(s("printer").as_deref(), Some("printer"));
        assert_eq!(s("printer.").as_deref(), Some("printer"));
        assert_eq!(s("52.113.194.132").as_deref(), Some("52.113.194.132"));
        assert_eq!(s("[2001:DB8::1]").as_deref(), Some("2001:db8::1"));
        assert_eq!(s("2001:db8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(s(""), None);
        assert_eq!(s("."), None);
        assert_eq!(s("  "), None);
    }

    #[test]
    fn keys_by_name_else_by_protocol_and_server_port() {
        assert_eq!(
            UnknownKey::of(Some("cdn.example.co.uk"), 6, 443).to_string(),
            "example.co.uk"
        );
        let port = UnknownKey::of(None, 17, 3478);
        assert_eq!(
            (port.to_string(), port.kind()),
            ("udp/3478".into(), KeyKind::Port)
        );
        assert_eq!(UnknownKey::of(Some("."), 6, 8443).to_string(), "tcp/8443");
        assert_eq!(UnknownKey::of(None, 1, 0).to_string(), "icmp");
    }

    fn flow(host: Option<&str>, proto: u8, port: u16, up: u64, down: u64) -> UnknownFlow<'_> {
        UnknownFlow {
            host,
            protocol: proto,
            server: SocketAddr::from(([192, 0, 2, 7], port)),
            upload: up,
            download: down,
        }
    }

    #[test]
    fn groups_add_up_and_the_largest_come_first() {
        let report = group(
            [
                flow(Some("a.example.com"), 6, 443, 100, 900),
                flow(None, 17, 3478, 50, 50),
                flow(Some("b.example.com"), 17, 443, 10, 90),
                flow(Some("other.org"), 6, 443, 100, 0),
                flow(None, 17, 3478, 0, 100),
                flow(None, 6, 8080, 100, 0),
            ],
            10,
        );
        assert_eq!(report.total_bytes, 1500);
        let keys: Vec<(&str, u64, u64)> = report
            .unknown
            .iter()
            .map(|e| (e.key.as_str(), e.bytes, e.flows))
            .collect();
        assert_eq!(
            keys,
            [
                ("example.com", 1100, 2),
                ("udp/3478", 200, 2),
                // Equal bytes: hosts before ports.
                ("other.org", 100, 1),
                ("tcp/8080", 100, 1)
            ]
        );
        let e = &report.unknown[0];
        assert_eq!(
            (e.kind, e.upload_bytes, e.download_bytes),
            (KeyKind::Host, 110, 990)
        );
        assert_eq!(e.example, "a.example.com");
        let p = &report.unknown[1];
        assert_eq!(
            (p.kind, p.example.as_str()),
            (KeyKind::Port, "192.0.2.7:3478")
        );
        assert_eq!(group([flow(None, 6, 1, 1, 1)], 0).unknown, []);
    }

    #[test]
    fn the_table_never_exceeds_its_capacity_and_keeps_the_largest() {
        let mut t = UnknownTable::new(8);
        for port in 1..=100u16 {
            t.add_flow(&flow(None, 17, port, u64::from(port), 0));
            assert!(t.len() <= 8);
        }
        assert_eq!(t.len(), 8);
        let top = t.top(100);
        let ports: Vec<&str> = top.unknown.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            ports,
            [
                "udp/100", "udp/99", "udp/98", "udp/97", "udp/96", "udp/95", "udp/94", "udp/93"
            ]
        );
        // Every byte is in the total, evicted keys' included.
        assert_eq!(top.total_bytes, (1..=100).sum::<u64>());
        // A new key no larger than all held is not let in.
        t.add_flow(&flow(None, 6, 9, 1, 0));
        assert!(t.top(100).unknown.iter().all(|e| e.key != "tcp/9"));
        assert_eq!(t.top(3).unknown.len(), 3);
    }
}
