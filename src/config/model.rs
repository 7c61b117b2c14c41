//! The validated configuration: every value typed, every cross-reference
//! resolved. Nothing downstream re-checks what is here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Serialize, Serializer};

use super::units::{
    Bandwidth, ByteSize, Direction, Dscp, HostPattern, PortRange, Protocol, Rate,
    serialize_duration,
};

/// Index of a category in [`Config::category`]; small and `Copy`, so the hot
/// path passes it instead of the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CategoryId(pub u8);

impl CategoryId {
    /// The index as `usize`.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// The most categories a configuration may define.
pub const MAX_CATEGORIES: usize = 32;

/// A value that may differ between the two directions of the link.
/// Written as one value for both, or as `{ upload = ..., download = ... }`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerDirection<T> {
    /// Value for traffic from the LAN to the WAN.
    pub upload: T,
    /// Value for traffic from the WAN to the LAN.
    pub download: T,
}

impl<T: Copy> PerDirection<T> {
    /// The same value in both directions.
    pub const fn both(value: T) -> Self {
        PerDirection {
            upload: value,
            download: value,
        }
    }
    /// The value for `dir`.
    #[inline]
    pub fn get(&self, dir: Direction) -> T {
        match dir {
            Direction::Upload => self.upload,
            Direction::Download => self.download,
        }
    }
    /// Sets the value for `dir`.
    pub fn set(&mut self, dir: Direction, value: T) {
        match dir {
            Direction::Upload => self.upload = value,
            Direction::Download => self.download = value,
        }
    }
}

impl<T: Serialize + PartialEq> Serialize for PerDirection<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.upload == self.download {
            self.upload.serialize(s)
        } else {
            use serde::ser::SerializeStruct;
            let mut st = s.serialize_struct("PerDirection", 2)?;
            st.serialize_field("upload", &self.upload)?;
            st.serialize_field("download", &self.download)?;
            st.end()
        }
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The category for traffic that no rule, app or heuristic claims.
    pub default_category: String,
    /// The two interfaces qosd bridges.
    pub interfaces: Interfaces,
    /// The Internet link's rates.
    pub link: Link,
    /// Categories, in file order; [`CategoryId`] indexes this list.
    pub category: Vec<Category>,
    /// Admin rules, first match wins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rule: Vec<Rule>,
    /// Classifier settings.
    pub classify: Classify,
    /// Data-path settings of the daemon.
    pub datapath: Datapath,
    /// Process settings of the daemon.
    pub daemon: Daemon,
    /// Prometheus exposition.
    pub metrics: Metrics,
    /// Admin HTTP API.
    pub api: Api,
    /// Flow-table limits.
    pub flows: Flows,
    /// `[shaper]`
    pub shaper: ShaperOptions,
    /// Shaping at the rate the line delivers now.
    pub autorate: Autorate,
    /// Where this configuration was read from: the file's path, or
    /// [`EMBEDDED_NAME`](super::EMBEDDED_NAME) for the embedded default.
    #[serde(skip)]
    pub source: String,
    /// The app catalog: built-in, plus `classify.apps_file`.
    #[serde(skip)]
    pub catalog: std::sync::Arc<Catalog>,
}

impl Config {
    /// The id of the category named `name`.
    pub fn category_id(&self, name: &str) -> Option<CategoryId> {
        self.category
            .iter()
            .position(|c| c.name == name)
            .and_then(|i| u8::try_from(i).ok())
            .map(CategoryId)
    }
    /// The category with id `id`.
    pub fn category(&self, id: CategoryId) -> Option<&Category> {
        self.category.get(id.index())
    }
    /// The id of [`Config::default_category`].
    pub fn default_category_id(&self) -> CategoryId {
        // Validation guarantees the name exists.
        self.category_id(&self.default_category).unwrap_or_default()
    }
    /// The configuration as TOML, with every default written out.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
}

/// The application catalog: named apps with host patterns and signatures.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Catalog {
    /// Apps in file order (built-in first, then the admin's file).
    pub apps: Vec<App>,
}

impl Catalog {
    /// The app named `name`.
    pub fn app(&self, name: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.name == name)
    }
}

/// One application in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// Unique name ("teams-audio").
    pub name: String,
    /// The category it belongs in by default (a category name; one the
    /// running configuration lacks means the default category).
    pub category: String,
    /// For admins.
    pub description: String,
    /// Host-name patterns (SNI, HTTP Host, DNS).
    pub hosts: Vec<HostPattern>,
    /// Signatures: any one matching identifies the app.
    pub signatures: Vec<Match>,
}

/// `[interfaces]`: the gateway's two sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interfaces {
    /// Toward the office LAN (download traffic leaves here).
    pub lan: String,
    /// Toward the ISP (upload traffic leaves here).
    pub wan: String,
}

/// `[link]`: what the shaper runs at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Link {
    /// Shaped rate from LAN to WAN.
    pub upload: Rate,
    /// Shaped rate from WAN to LAN.
    pub download: Rate,
    /// Bytes added to every frame's length when charging it to the shaper
    /// (framing the ISP's link adds and AF_PACKET does not see).
    pub overhead: PerDirection<i32>,
    /// Signal the download flows as soon as a queue stands in the ISP's
    /// download buffer, outside qosd ([`crate::wan::guard`]).
    pub isp_queue_guard: bool,
    /// The queue in the ISP's download buffer that counts as standing.
    #[serde(serialize_with = "serialize_duration")]
    pub isp_queue_target: Duration,
    /// While the download is full, lower each download TCP flow's receive
    /// window to its share of the line times its round trip plus a few
    /// milliseconds ([`crate::wan::clamp`]).
    pub window_clamp: bool,
}

impl Link {
    /// The shaped rate in `dir`.
    pub fn rate(&self, dir: Direction) -> Rate {
        match dir {
            Direction::Upload => self.upload,
            Direction::Download => self.download,
        }
    }
}

/// One `[[category]]`: a traffic class with HTB-like semantics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Category {
    /// Short name used in rules, metrics labels and the API.
    pub name: String,
    /// Free text for admins and dashboards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// 0 (served first) .. 7 (served last).
    pub priority: u8,
    /// Share of spare capacity among categories of equal priority.
    pub weight: u32,
    /// Guaranteed rate when the category has traffic.
    pub min: PerDirection<Bandwidth>,
    /// Ceiling the category never exceeds.
    pub max: PerDirection<Bandwidth>,
    /// DSCP written into packets of this category on egress, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dscp: Option<Dscp>,
    /// CoDel target queue delay.
    #[serde(serialize_with = "serialize_duration")]
    pub codel_target: Duration,
    /// CoDel interval.
    #[serde(serialize_with = "serialize_duration")]
    pub codel_interval: Duration,
    /// Mark ECN-capable packets instead of dropping them.
    pub ecn: bool,
}

impl Category {
    /// The guaranteed rate in `dir` on a link of `link`.
    pub fn min_rate(&self, dir: Direction, link: &Link) -> Rate {
        self.min.get(dir).resolve(link.rate(dir))
    }
    /// The ceiling in `dir` on a link of `link`.
    pub fn max_rate(&self, dir: Direction, link: &Link) -> Rate {
        self.max.get(dir).resolve(link.rate(dir))
    }
}

/// One `[[rule]]`: conditions that, when all hold, put a flow in a category.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// Name shown as the classifier's `decided_by` (`rule:<name>`).
    pub name: String,
    /// Category for matching traffic.
    pub category: String,
    /// Resolved [`Rule::category`].
    #[serde(skip)]
    pub category_id: CategoryId,
    /// The conditions.
    #[serde(flatten)]
    pub when: Match,
}

/// Conditions on a flow, shared by admin rules and the app catalog's
/// signatures. Lists match when any element matches; an absent condition
/// always matches. `src`/`dst` are as seen in the flow's first packet
/// (src = the side that opened it); `ports`/`cidrs` match either end.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Match {
    /// IP protocol.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Port ranges matching either end.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
    /// Port ranges matching the initiator's port.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub src_ports: Vec<PortRange>,
    /// Port ranges matching the responder's port.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dst_ports: Vec<PortRange>,
    /// Networks matching either end.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cidrs: Vec<IpNet>,
    /// Networks matching the initiator.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub src_cidrs: Vec<IpNet>,
    /// Networks matching the responder.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dst_cidrs: Vec<IpNet>,
    /// DSCP values on the packet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dscp: Vec<Dscp>,
    /// 802.1Q VLAN ids (the outer tag).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vlan: Vec<u16>,
    /// Host names learned from SNI, HTTP Host or DNS.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostPattern>,
    /// Applications recognised by the app catalog.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<String>,
    /// Only packets travelling this way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// The first bytes of the first payload the flow carries (either way).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_bytes_as_str"
    )]
    pub payload_prefix: Option<Vec<u8>>,
    /// The lengths, in bytes, that payload may have (with
    /// `payload_prefix`): a protocol whose first message has fixed sizes
    /// is not claimed by a prefix that other traffic starts with too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub payload_len: Vec<PortRange>,
    /// HTTP/1.x: the method of the flow's first request is one of these
    /// (exactly: methods are case-sensitive).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_method: Vec<String>,
    /// HTTP/1.x: the path of the first request (query string and fragment
    /// left out, not percent-decoded) ends with one of these, compared
    /// case-insensitively.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_path_suffix: Vec<String>,
    /// HTTP/1.x: the User-Agent of the first request starts with one of
    /// these, compared case-insensitively (its first product token names
    /// the software: RFC 9110 10.1.5).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_user_agent: Vec<String>,
    /// HTTP/1.x: the media type of the Content-Type of the server's first
    /// response (parameters after `;` left out) starts with one of these,
    /// compared case-insensitively (`video/` takes every video type).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_content_type: Vec<String>,
}

impl Match {
    /// True when a condition reads the flow's first HTTP request.
    pub fn has_http_request(&self) -> bool {
        !(self.http_method.is_empty()
            && self.http_path_suffix.is_empty()
            && self.http_user_agent.is_empty())
    }

    /// True when a condition reads an HTTP exchange (request or response).
    pub fn has_http(&self) -> bool {
        self.has_http_request() || !self.http_content_type.is_empty()
    }
}

fn serialize_bytes_as_str<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_str(&b.iter().map(|&c| char::from(c)).collect::<String>()),
        None => s.serialize_none(),
    }
}

/// `[daemon]`: how `qosd run` fits into the system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Daemon {
    /// Kernel bridge of both interfaces that keeps the office online while
    /// qosd is not running (fail-open); qosd removes it when it starts.
    /// Empty: no bypass bridge is expected.
    pub bypass_bridge: String,
    /// Unprivileged user to switch to after opening the sockets, when
    /// started as root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// How long an interface that is present but whose socket cannot be
    /// re-opened (after it was re-created) is retried before qosd exits
    /// with status 1, so the fail-open bypass takes over.
    #[serde(serialize_with = "serialize_duration")]
    pub reopen_timeout: Duration,
}

/// `[datapath]`: how the daemon moves frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Datapath {
    /// How frames move between the interfaces and qosd.
    pub backend: Backend,
    /// Turn off GRO/GSO/TSO/LRO on both interfaces at start (and restore
    /// them at exit); when false, qosd refuses to start if they are on.
    pub manage_offloads: bool,
    /// Largest frame forwarded, in bytes; `None`: the larger interface MTU
    /// plus Ethernet and two VLAN headers (jumbo frames follow the MTU).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_frame: Option<u32>,
    /// Kernel socket buffer per interface and direction, in bytes.
    pub socket_buffer: u32,
    /// Data-path threads: 1 serves both directions (the default: at
    /// branch-office rates a wake-up costs more than the work it does, and
    /// one thread wakes half as often as two), 2 gives each direction one
    /// (for links whose two directions together need more than a core).
    pub threads: u8,
}

/// How the daemon moves frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One `recvmsg` and one `send` per frame (the socket bound by pnet):
    /// the simplest path, kept as a fallback.
    Pnet,
    /// A memory-mapped TPACKET_V2 receive ring and batched `sendmmsg`:
    /// fewer system calls per frame (BENCHMARKS.md: more packets/s and
    /// less CPU than `pnet` on every measure, same latency).
    Ring,
    /// AF_XDP: an XDP program hands every frame to qosd before the
    /// kernel's stack sees it; sending as `Ring`. Refuses to start where
    /// the kernel or driver cannot.
    Xdp,
    /// The default: `Xdp` where it works and the interface carries no
    /// address of the host's, else `Ring`, else `Pnet`; the choice is
    /// logged and exported (`qosd_datapath_backend`).
    Auto,
}

impl Backend {
    /// The configuration's spelling, also the metric's label.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Pnet => "pnet",
            Backend::Ring => "ring",
            Backend::Xdp => "xdp",
            Backend::Auto => "auto",
        }
    }
}

/// `[classify]`: how the classifier works, beyond rules.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classify {
    /// Trust the DSCP that hosts set (EF -> voice, AF4x -> video, CS1/LE ->
    /// bulk) for flows nothing else recognised.
    pub trust_dscp: bool,
    /// An extra app catalog file: its apps are added to the built-in
    /// catalog, replacing built-in apps of the same name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apps_file: Option<PathBuf>,
    /// How many packets of a flow are inspected before its verdict is final.
    pub inspect_packets: u16,
    /// A flow that has moved this many bytes and is still only "default" is
    /// treated as bulk (long high-rate transfers).
    pub bulk_after_bytes: u64,
    /// Category for pure TCP ACKs (no payload), whatever their flow's
    /// category; `None` keeps them with their flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_category: Option<String>,
    /// Memory all flows' inspection state may hold together (partial
    /// ClientHellos, QUIC Initials, DNS-over-TCP answers): a LAN host
    /// opening many flows that never complete must not grow qosd.
    pub dpi_memory: ByteSize,
}

/// `[metrics]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Metrics {
    /// Address of the Prometheus `/metrics` endpoint.
    pub listen: SocketAddr,
    /// How many of the busiest LAN computers get a rate series of their own
    /// (`qosd_host_rate_bits_per_second`); 0, the default, exports none
    /// (a series per computer would grow without bound).
    pub top_hosts: u32,
}

/// `[api]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Api {
    /// Address of the admin API.
    pub listen: SocketAddr,
    /// File holding the bearer token that write requests must present;
    /// without it the API is read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// `[shaper]`: how a category's rate is shared inside it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ShaperOptions {
    /// Who shares: LAN hosts, then each host's flows, or flows alone.
    pub fairness: Fairness,
    /// One LAN computer's ceiling across all categories, per direction
    /// (a share of the link or a rate); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_max: Option<Bandwidth>,
}

/// Who shares a category's rate (`shaper.fairness`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fairness {
    /// LAN hosts (by MAC address and VLAN) share first, then each host's
    /// flows: a computer with 16 connections gets what one with a single
    /// connection gets.
    #[default]
    Host,
    /// Every flow shares equally, whoever opened it (fq_codel's fairness).
    Flow,
}

/// `[flows]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flows {
    /// Most flows tracked at once; beyond it the least recently seen go.
    pub max_flows: u32,
    /// A TCP flow with no packet for this long is forgotten.
    #[serde(serialize_with = "serialize_duration")]
    pub tcp_idle_timeout: Duration,
    /// A UDP (or other) flow with no packet for this long is forgotten.
    #[serde(serialize_with = "serialize_duration")]
    pub udp_idle_timeout: Duration,
    /// A TCP flow is forgotten this long after its FIN or RST.
    #[serde(serialize_with = "serialize_duration")]
    pub tcp_closed_timeout: Duration,
}

/// `[autorate]`: shaping each direction at what the line delivers now,
/// between a floor and a ceiling, from the WAN delay of the office's own
/// traffic. Off by default: `link.upload` / `link.download` are then the
/// fixed rates; on, they are where each direction starts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Autorate {
    /// Whether the rates follow the line.
    pub enabled: bool,
    /// Never shape the upload below.
    pub upload_min: Rate,
    /// Never above (the line's best case).
    pub upload_max: Rate,
    /// Never shape the download below.
    pub download_min: Rate,
    /// Never above.
    pub download_max: Rate,
    /// WAN queueing delay that counts as the line's buffer filling (or 5 %
    /// of the path's own round trip, when larger: satellite paths jitter
    /// more).
    #[serde(serialize_with = "serialize_duration")]
    pub delay_threshold: Duration,
}

impl Autorate {
    /// The floor in `dir`.
    pub fn min(&self, dir: Direction) -> Rate {
        match dir {
            Direction::Upload => self.upload_min,
            Direction::Download => self.download_min,
        }
    }

    /// The ceiling in `dir`.
    pub fn max(&self, dir: Direction) -> Rate {
        match dir {
            Direction::Upload => self.upload_max,
            Direction::Download => self.download_max,
        }
    }
}
