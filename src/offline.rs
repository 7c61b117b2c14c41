//! Offline classification of a capture (`qosd classify --pcap`): every
//! frame goes through the same parser, flow table and classifier as in the
//! daemon, at the capture's timestamps; the result is one report per flow.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::classify::{ClassCache, ClassCell, ClassTable, Classifier, NameLookup, PacketCtx};
use crate::config::{Config, Direction, Flows, Protocol};
use crate::flow::{Flow, FlowKey};
use crate::io::pcap::{PcapError, ReadStats, for_each_frame};
use crate::packet::{FrameKind, PacketMeta, addr_from_bytes};
use crate::telemetry::unknown::{UnknownFlow, UnknownReport, group};
use crate::time::Instant;

/// One flow of a capture, as `qosd classify --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct FlowReport {
    /// "tcp", "udp", "icmp", "icmpv6", ... or the protocol number.
    pub proto: String,
    /// The side that sent the flow's first packet: "ip:port", IPv6 in brackets.
    pub src: String,
    /// The other side.
    pub dst: String,
    /// The app recognised, if any.
    pub app: Option<String>,
    /// The category (of the first packet's direction).
    pub category: String,
    /// How the verdict was reached ("sni", "rule:erp", ...).
    pub decided_by: String,
    /// Packets both ways.
    pub packets: u64,
    /// Bytes (frame lengths) both ways.
    pub bytes: u64,
    /// Host name learned, if any (not in `--json`).
    #[serde(skip)]
    pub host: Option<String>,
    /// Order of appearance in the capture.
    #[serde(skip)]
    pub id: u64,
    /// IP protocol number (not in `--json`: `proto` has its name).
    #[serde(skip)]
    pub protocol: u8,
    /// The side that did not open the flow (`dst`) as an address.
    #[serde(skip)]
    pub server: SocketAddr,
    /// Bytes from the LAN to the Internet (not in `--json`).
    #[serde(skip)]
    pub upload_bytes: u64,
    /// Bytes from the Internet to the LAN (not in `--json`).
    #[serde(skip)]
    pub download_bytes: u64,
}

impl FlowReport {
    /// The flow as protocol discovery takes it.
    pub fn as_unknown(&self) -> UnknownFlow<'_> {
        UnknownFlow {
            host: self.host.as_deref(),
            protocol: self.protocol,
            server: self.server,
            upload: self.upload_bytes,
            download: self.download_bytes,
        }
    }
}

/// The top `n` keys of the capture's traffic that no app named (see
/// [`crate::telemetry::unknown`]): the same grouping as the daemon's
/// `/api/v1/unknown`, over whole flows (the capture is over, so a flow
/// still being inspected at its end counts too).
pub fn unknown_traffic(flows: &[FlowReport], n: usize) -> UnknownReport {
    group(
        flows
            .iter()
            .filter(|f| f.app.is_none())
            .map(FlowReport::as_unknown),
        n,
    )
}

/// Frame counts of a whole capture.
#[derive(Debug, Default, Clone, Copy)]
pub struct CaptureStats {
    /// What the reader saw.
    pub read: ReadStats,
    /// IP frames classified.
    pub ip_frames: u64,
    /// Frames that are not IP.
    pub non_ip_frames: u64,
    /// Frames claiming to be IP that could not be parsed.
    pub malformed_frames: u64,
    /// Frames whose flow's inspection state `classify.dpi_memory` refused
    /// to keep. Offline nothing expires, so a capture with very many
    /// flows that never settle can spend the budget where the daemon,
    /// expiring idle flows, would not: its verdicts may then differ.
    pub dpi_refused_frames: u64,
}

/// True for addresses that belong inside an office (RFC 1918, CGNAT, ULA,
/// link-local, loopback): used to tell upload from download in a capture,
/// which has no LAN/WAN interfaces.
pub fn is_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || (a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            let s = a.segments()[0];
            a.is_loopback() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

/// The direction of `pkt` in a capture: from a local to a non-local address
/// is upload, the reverse download; otherwise the flow's initiator uploads.
pub fn capture_direction(pkt: &PacketMeta<'_>, from_initiator: bool) -> Direction {
    match (is_local(pkt.src_ip()), is_local(pkt.dst_ip())) {
        (true, false) => Direction::Upload,
        (false, true) => Direction::Download,
        _ if from_initiator => Direction::Upload,
        _ => Direction::Download,
    }
}

fn endpoint(addr: [u8; 16], port: u16, v4: bool) -> String {
    let ip = addr_from_bytes(
        addr,
        if v4 {
            crate::packet::IpVersion::V4
        } else {
            crate::packet::IpVersion::V6
        },
    );
    SocketAddr::new(ip, port).to_string()
}

/// A flow as reports and the API show it.
pub fn describe_flow(
    key: &FlowKey,
    flow: &Flow<ClassCell>,
    classifier: &Classifier,
    cfg: &Config,
) -> FlowReport {
    let v4 = key.lo.get(..12) == Some(&V4_MAPPED[..]) && key.hi.get(..12) == Some(&V4_MAPPED[..]);
    let (src, sp) = key.endpoint(flow.initiator());
    let (dst, dp) = key.endpoint(flow.initiator().other());
    let server = SocketAddr::new(crate::telemetry::unknown::key_address(dst), dp);
    let c = flow.value.lock();
    let category_id = flow.first_direction().pick(c.category);
    FlowReport {
        proto: Protocol(key.protocol).to_string(),
        src: endpoint(src, sp, v4),
        dst: endpoint(dst, dp, v4),
        app: c
            .app
            .and_then(|a| classifier.app_name(a))
            .map(str::to_owned),
        category: cfg
            .category(category_id)
            .map(|c| c.name.clone())
            .unwrap_or_default(),
        decided_by: classifier.decided_by_name(c.decided_by).into_owned(),
        packets: flow.total_packets(),
        bytes: flow.total_bytes(),
        host: c.host.as_deref().map(str::to_owned),
        id: flow.id(),
        protocol: key.protocol,
        server,
        upload_bytes: flow.bytes(Direction::Upload),
        download_bytes: flow.bytes(Direction::Download),
    }
}

const V4_MAPPED: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// Classifies every flow of the capture at `path` with `cfg`. `progress`
/// is called every 64k frames with the frames read so far.
pub fn classify_capture(
    path: &Path,
    cfg: &Config,
    names: Arc<dyn NameLookup + Send + Sync>,
    mut progress: impl FnMut(u64),
) -> Result<(Vec<FlowReport>, CaptureStats), PcapError> {
    let classifier = Classifier::new(cfg, 1);
    // Offline, nothing expires and nothing is evicted: every flow is
    // reported. The table grows with the capture: allocated for 16M flows
    // up front, each flow inserted touched its own page (~4 KiB of RSS per
    // flow).
    let mut cache = ClassCache::new();
    let table = ClassTable::with_capacity(
        &Flows {
            max_flows: 16_777_216,
            ..cfg.flows.clone()
        },
        4096,
    );
    let mut stats = CaptureStats::default();
    let read = for_each_frame(path, |ts, frame| {
        let now = Instant::from_nanos(u64::try_from(ts.as_nanos()).unwrap_or(u64::MAX));
        let pkt = PacketMeta::parse(frame);
        match pkt.kind {
            FrameKind::NonIp { .. } => stats.non_ip_frames += 1,
            FrameKind::Malformed => stats.malformed_frames += 1,
            FrameKind::Ip => {
                stats.ip_frames += 1;
                let (key, side) = FlowKey::of(&pkt);
                // The direction needs the initiator: peek, else this packet starts the flow.
                let initiator = table.get(&key, |f| f.initiator()).unwrap_or(side);
                let dir = capture_direction(&pkt, side == initiator);
                let ctx = PacketCtx::new(&pkt, dir, now);
                let (verdict, _) = classifier.observe(&table, &mut cache, &ctx, &*names);
                stats.dpi_refused_frames += u64::from(!verdict.refused.is_empty());
            }
        }
        let n = stats.ip_frames + stats.non_ip_frames + stats.malformed_frames;
        if n % 65_536 == 0 {
            progress(n);
        }
    })?;
    stats.read = read;

    let mut reports = Vec::with_capacity(table.len());
    table.for_each(|key, flow| reports.push(describe_flow(key, flow, &classifier, cfg)));
    reports.sort_by_key(|r| r.id);
    Ok((reports, stats))
}
