//! Prometheus exposition. The data path never touches a metric: each
//! direction publishes a snapshot of its plain counters, and this module
//! folds the snapshots into metric families when Prometheus scrapes, through
//! a custom collector of the `prometheus` crate.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::autorate::Published;
use crate::classify::DecidedBy;
use crate::classify::budget::Holder;
use crate::config::{Config, Direction};
use crate::engine::accounting::RTT_BUCKET_BOUNDS_NS;
use crate::shaper::{DELAY_BUCKET_BOUNDS_NS, DropReason};
use crate::telemetry::hosts::HostSummary;
use crate::telemetry::{FlowStats, PortState, Snapshot, by_interface};
use crate::wan::Source;

/// Everything one scrape exposes.
#[derive(Debug, Clone)]
pub struct MetricsView {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// Upload and download snapshots.
    pub snapshots: [Snapshot; 2],
    /// Current delivered rate per direction and category, bits/s.
    pub rates: [Vec<f64>; 2],
    /// Flow table.
    pub flows: FlowStats,
    /// Configuration reloads that succeeded / failed.
    pub reloads: [u64; 2],
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Both directions forward: threads alive, every interface up.
    pub ready: bool,
    /// The link's rates and WAN delay (autorate's view; a rate of 0 means
    /// none published yet: the configured rate applies).
    pub link: Published,
    /// The busiest LAN computers, `metrics.top_hosts` of them (none by
    /// default).
    pub hosts: Vec<HostSummary>,
}

/// Where the collector gets its view at each scrape.
pub trait MetricsSource: Send + Sync {
    /// The current view.
    fn view(&self) -> MetricsView;
}

struct QosdCollector {
    source: Arc<dyn MetricsSource>,
    descs: Vec<Desc>,
}

/// Families, built as they are filled in.
#[derive(Default)]
struct Families {
    families: Vec<MetricFamily>,
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_owned());
            l.set_value((*v).to_owned());
            l
        })
        .collect()
}

impl Families {
    fn push(&mut self, name: &str, kind: MetricType, m: Metric) {
        match self.families.iter_mut().find(|f| f.name() == name) {
            Some(f) => f.mut_metric().push(m),
            None => {
                let mut f = MetricFamily::default();
                f.set_name(name.to_owned());
                f.set_help(help(name).to_owned());
                f.set_field_type(kind);
                f.mut_metric().push(m);
                self.families.push(f);
            }
        }
    }

    fn counter(&mut self, name: &str, l: &[(&str, &str)], value: f64) {
        let mut c = Counter::default();
        c.set_value(value);
        let mut m = Metric::from_label(labels(l));
        m.set_counter(c);
        self.push(name, MetricType::COUNTER, m);
    }

    fn gauge(&mut self, name: &str, l: &[(&str, &str)], value: f64) {
        let mut g = Gauge::default();
        g.set_value(value);
        let mut m = Metric::from_label(labels(l));
        m.set_gauge(g);
        self.push(name, MetricType::GAUGE, m);
    }

    fn histogram(&mut self, name: &str, l: &[(&str, &str)], h: Histogram) {
        let mut m = Metric::from_label(labels(l));
        m.set_histogram(h);
        self.push(name, MetricType::HISTOGRAM, m);
    }
}

/// Names and help of every family, for the collector's descriptors.
const FAMILIES: &[(&str, &str)] = &[
    ("qosd_build_info", "qosd version (value 1)."),
    ("qosd_uptime_seconds", "Seconds since qosd started."),
    (
        "qosd_ready",
        "1 while both directions forward (threads running, every interface up); /readyz says why not.",
    ),
    (
        "qosd_interface_up",
        "1 while the interface is present, up, with carrier, and qosd's sockets on it are open.",
    ),
    (
        "qosd_datapath_backend",
        "1 for how each direction receives frames: backend xdp (AF_XDP), ring (TPACKET ring) or pnet (datapath.backend, as auto resolved it).",
    ),
    (
        "qosd_interface_reopens_total",
        "Times qosd re-opened its sockets on the interface after it was re-created.",
    ),
    (
        "qosd_link_rate_bytes_per_second",
        "Shaping rate of the link in bytes per second, per direction (link.*, or autorate's rate).",
    ),
    (
        "qosd_link_rate_bits_per_second",
        "Shaping rate of the link in bits per second, per direction (link.*, or autorate's rate).",
    ),
    (
        "qosd_autorate_min_bits_per_second",
        "Autorate's floor (autorate.*_min), per direction; only while autorate is enabled.",
    ),
    (
        "qosd_autorate_max_bits_per_second",
        "Autorate's ceiling (autorate.*_max), per direction; only while autorate is enabled.",
    ),
    (
        "qosd_autorate_capacity_bits_per_second",
        "What the line can carry as autorate estimates it (what it delivered when its buffer last filled, or more since), per direction.",
    ),
    (
        "qosd_autorate_changes_total",
        "Rate changes autorate made, per direction and reason (bloat: WAN delay grew, cut; raise: loaded with delay at its baseline).",
    ),
    (
        "qosd_wan_delay_baseline_seconds",
        "WAN round trip with empty buffers (the paths' minimums), as measured passively on the office's traffic, per direction.",
    ),
    (
        "qosd_wan_delay_seconds",
        "WAN round trip now as this direction's samples see it: the baseline plus the median queueing delay of the last interval.",
    ),
    (
        "qosd_host_rate_bits_per_second",
        "Rate of one of the busiest LAN computers (host: its MAC address) over the last second, per direction; metrics.top_hosts of them (none by default).",
    ),
    (
        "qosd_isp_queue_seconds",
        "The queue standing in the ISP's download buffer, outside qosd, at the last download packet (0: none, or no flow with TCP timestamps to read it from).",
    ),
    (
        "qosd_isp_queue_signals_total",
        "Times the ISP-queue guard told every download flow with a standing queue in qosd to slow down (each drop is also in qosd_dropped_packets_total, reason isp_queue).",
    ),
    (
        "qosd_isp_queue_throttled_seconds_total",
        "Time the download ran at 3/4 of its rate while a queue stood in the ISP's buffer.",
    ),
    (
        "qosd_window_clamp_lowered_total",
        "Acknowledgements from the office whose TCP receive window qosd lowered, so that download senders keep no more in flight than their share of the line needs (link.window_clamp).",
    ),
    (
        "qosd_window_clamp_windows_total",
        "Windows the download window clamp set: each download flow's, every two round trips (at least 100 ms) while the download is full.",
    ),
    (
        "qosd_window_clamp_active",
        "1 while the download counts as full (qosd's download queue held more than 1 ms of the line within the last second), so the download flows' windows are lowered.",
    ),
    (
        "qosd_window_clamp_allowance_seconds",
        "The queue the download windows leave room for over each flow's round trip: 4 ms at first, more when the receivers hold their acknowledgements (the download queue ran dry), less when the queue stood.",
    ),
    (
        "qosd_isp_queue_gave_up_total",
        "Queues in the ISP's buffer the guard left alone: the throttle did not halve them in 0.5 s, so they are not in front of qosd.",
    ),
    (
        "qosd_wan_delay_samples_total",
        "WAN round trips measured passively, by source (tcp_timestamp, tcp_handshake, tcp_ack, dns, rtcp).",
    ),
    (
        "qosd_datapath_running",
        "1 while the data path of the direction runs.",
    ),
    (
        "qosd_category_packets_total",
        "Packets handed to the shaper, per direction and category.",
    ),
    (
        "qosd_category_bytes_total",
        "Bytes handed to the shaper, per direction and category.",
    ),
    (
        "qosd_category_sent_packets_total",
        "Packets sent by the shaper, per direction and category.",
    ),
    (
        "qosd_category_sent_bytes_total",
        "Bytes sent by the shaper, per direction and category.",
    ),
    (
        "qosd_category_dropped_packets_total",
        "Packets the shaper dropped, per direction, category and reason.",
    ),
    (
        "qosd_category_dropped_bytes_total",
        "Bytes the shaper dropped, per direction, category and reason.",
    ),
    (
        "qosd_category_ecn_marked_packets_total",
        "Packets CoDel marked ECN CE instead of dropping.",
    ),
    (
        "qosd_category_backlog_packets",
        "Packets queued now, per direction and category.",
    ),
    (
        "qosd_category_backlog_bytes",
        "Bytes queued now, per direction and category.",
    ),
    (
        "qosd_category_rate_bytes_per_second",
        "Bytes per second sent over the last second, per direction and category.",
    ),
    (
        "qosd_category_queue_delay_seconds",
        "Time packets spent queued in qosd, per direction and category.",
    ),
    (
        "qosd_app_packets_total",
        "Packets handed to the shaper, per direction, app (from the catalog; unknown: none recognised, or not yet when the packet passed) and the category the packet was queued in.",
    ),
    (
        "qosd_app_bytes_total",
        "Bytes handed to the shaper, per direction, app (from the catalog; unknown: none recognised, or not yet when the packet passed) and the category the packet was queued in.",
    ),
    (
        "qosd_unclassified_bytes_total",
        "Bytes handed to the shaper whose flow's verdict named no app (qosd_app_bytes_total's app=\"unknown\", summed over categories), per direction: what GET /api/v1/unknown breaks down by host name and port.",
    ),
    (
        "qosd_tcp_rtt_seconds",
        "Round trips of the office's TCP flows from qosd to the far end and back (neither qosd's queues nor the LAN in them), measured passively, per category and direction: upload times a LAN sender's data segment to the far end's acknowledgement of it; download times a LAN receiver's acknowledgement (or a client's SYN) to the far end's next segment echoing it.",
    ),
    (
        "qosd_tcp_data_packets_total",
        "TCP segments carrying data, per direction (upload: sent by LAN hosts; download: by far ends) and category, retransmissions included.",
    ),
    (
        "qosd_tcp_retransmitted_packets_total",
        "TCP data segments that started before the highest sequence number their flow had sent (retransmissions; also keepalive and window probes, and segments the network reordered), per direction and category. Divide by qosd_tcp_data_packets_total for a rate.",
    ),
    (
        "qosd_category_active_flows",
        "Flows tracked now, by category (of the flow's first packet).",
    ),
    (
        "qosd_classifier_decisions_total",
        "Flows whose verdict settled, by how it was decided.",
    ),
    (
        "qosd_frames_total",
        "Frames handled per direction, by kind (ip, non_ip, malformed).",
    ),
    (
        "qosd_dscp_marked_packets_total",
        "Packets rewritten with their category's DSCP.",
    ),
    (
        "qosd_interface_received_frames_total",
        "Frames received on an interface.",
    ),
    (
        "qosd_interface_received_bytes_total",
        "Bytes received on an interface.",
    ),
    (
        "qosd_interface_transmitted_frames_total",
        "Frames transmitted on an interface.",
    ),
    (
        "qosd_interface_transmitted_bytes_total",
        "Bytes transmitted on an interface.",
    ),
    (
        "qosd_dropped_packets_total",
        "Frames received and not transmitted, per direction and reason (shaper reasons plus oversized, tx_error, tx_queue_full, egress_down).",
    ),
    (
        "qosd_dropped_bytes_total",
        "Bytes received and not transmitted, per direction and reason.",
    ),
    (
        "qosd_checksums_completed_total",
        "Frames whose partial TCP/UDP checksum qosd completed.",
    ),
    (
        "qosd_datapath_bell_rings_total",
        "Voice frames that woke the data path as they arrived (AF_XDP backend's doorbell), per direction.",
    ),
    (
        "qosd_datapath_errors_total",
        "Data-path errors by interface and kind.",
    ),
    ("qosd_flows", "Flows tracked now."),
    ("qosd_flows_created_total", "Flows created."),
    (
        "qosd_flow_evictions_total",
        "Flows evicted because the table was full.",
    ),
    (
        "qosd_flows_expired_total",
        "Flows removed after their idle timeout.",
    ),
    (
        "qosd_dns_cache_entries",
        "Names learned from DNS answers, held now.",
    ),
    (
        "qosd_dns_cache_evictions_total",
        "DNS cache entries evicted because it was full.",
    ),
    (
        "qosd_dpi_memory_bytes",
        "Bytes of inspection state that pending flows hold now (partial ClientHellos, QUIC Initials, DNS over TCP).",
    ),
    (
        "qosd_dpi_memory_limit_bytes",
        "Limit on qosd_dpi_memory_bytes (classify.dpi_memory).",
    ),
    (
        "qosd_dpi_refusals_total",
        "Flow inspection state not kept because the DPI memory budget was spent, per direction and kind (flow, tls, quic, dns).",
    ),
    (
        "qosd_config_reloads_total",
        "Configuration reloads, by result.",
    ),
];

fn help(name: &str) -> &'static str {
    FAMILIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, h)| *h)
        .unwrap_or("")
}

impl Collector for QosdCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        build(&self.source.view())
    }
}

/// The metric families of `v`.
pub fn build(v: &MetricsView) -> Vec<MetricFamily> {
    let mut f = Families::default();
    let cfg = &v.config;
    f.gauge(
        "qosd_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    f.gauge("qosd_uptime_seconds", &[], v.uptime_seconds);
    f.gauge("qosd_ready", &[], f64::from(u8::from(v.ready)));
    for h in &v.hosts {
        for (d, rate) in [
            ("upload", h.rate_bps.upload),
            ("download", h.rate_bps.download),
        ] {
            f.gauge(
                "qosd_host_rate_bits_per_second",
                &[("direction", d), ("host", &h.mac)],
                rate,
            );
        }
    }
    for p in by_interface(v.snapshots.iter().flat_map(|s| s.ports.iter())) {
        let l = [("interface", p.interface.as_str()), ("role", p.role)];
        let up = p.state == PortState::Up;
        f.gauge("qosd_interface_up", &l, f64::from(u8::from(up)));
        f.counter("qosd_interface_reopens_total", &l, p.reopens as f64);
    }
    let mut decisions = [0u64; DecidedBy::KINDS.len()];
    for (dir, snap) in Direction::BOTH.iter().zip(&v.snapshots) {
        let d = dir.as_str();
        let (rx_if, tx_if) = match dir {
            Direction::Upload => (cfg.interfaces.lan.as_str(), cfg.interfaces.wan.as_str()),
            Direction::Download => (cfg.interfaces.wan.as_str(), cfg.interfaces.lan.as_str()),
        };
        if let Some(b) = snap.backend {
            f.gauge(
                "qosd_datapath_backend",
                &[
                    ("direction", d),
                    ("interface", rx_if),
                    ("backend", b.as_str()),
                ],
                1.0,
            );
        }
        let link = dir.pick(v.link.status);
        let rate = match link.rate.bps() {
            0 => cfg.link.rate(*dir).bps(),
            r => r,
        } as f64;
        f.gauge(
            "qosd_link_rate_bytes_per_second",
            &[("direction", d)],
            rate / 8.0,
        );
        f.gauge("qosd_link_rate_bits_per_second", &[("direction", d)], rate);
        if link.enabled {
            let l = [("direction", d)];
            f.gauge(
                "qosd_autorate_min_bits_per_second",
                &l,
                link.min.bps() as f64,
            );
            f.gauge(
                "qosd_autorate_max_bits_per_second",
                &l,
                link.max.bps() as f64,
            );
            if let Some(c) = link.capacity {
                f.gauge("qosd_autorate_capacity_bits_per_second", &l, c.bps() as f64);
            }
        }
        for (reason, n) in ["bloat", "raise"].into_iter().zip(link.changes) {
            f.counter(
                "qosd_autorate_changes_total",
                &[("direction", d), ("reason", reason)],
                n as f64,
            );
        }
        if let Some(b) = link.baseline {
            f.gauge(
                "qosd_wan_delay_baseline_seconds",
                &[("direction", d)],
                b.as_secs_f64(),
            );
        }
        if let Some(x) = link.delay {
            f.gauge(
                "qosd_wan_delay_seconds",
                &[("direction", d)],
                x.as_secs_f64(),
            );
        }
        f.gauge(
            "qosd_datapath_running",
            &[("direction", d)],
            f64::from(u8::from(snap.running)),
        );
        let rates = dir.pick_ref(&v.rates);
        let mut shaper_drops: HashMap<&str, (u64, u64)> = HashMap::new();
        // Categories that reloads removed still count in the direction's
        // totals, which must never go back.
        for reason in DropReason::ALL {
            let gone = snap.retired.dropped(reason);
            let e = shaper_drops.entry(reason.as_str()).or_default();
            e.0 += gone.packets;
            e.1 += gone.bytes;
        }
        // Labels come from the layout the counters were taken in: right
        // after a reload it can still be the previous configuration's.
        let layout = snap.config.as_deref().unwrap_or(cfg);
        for (i, c) in snap.categories.iter().enumerate() {
            let Some(cat) = layout.category.get(i) else {
                continue;
            };
            let l = [("direction", d), ("category", cat.name.as_str())];
            f.counter("qosd_category_packets_total", &l, c.arrived.packets as f64);
            f.counter("qosd_category_bytes_total", &l, c.arrived.bytes as f64);
            f.counter(
                "qosd_category_sent_packets_total",
                &l,
                c.sent.packets as f64,
            );
            f.counter("qosd_category_sent_bytes_total", &l, c.sent.bytes as f64);
            for reason in DropReason::ALL {
                let dropped = c.dropped(reason);
                let lr = [
                    ("direction", d),
                    ("category", cat.name.as_str()),
                    ("reason", reason.as_str()),
                ];
                f.counter(
                    "qosd_category_dropped_packets_total",
                    &lr,
                    dropped.packets as f64,
                );
                f.counter(
                    "qosd_category_dropped_bytes_total",
                    &lr,
                    dropped.bytes as f64,
                );
                let e = shaper_drops.entry(reason.as_str()).or_default();
                e.0 += dropped.packets;
                e.1 += dropped.bytes;
            }
            f.counter(
                "qosd_category_ecn_marked_packets_total",
                &l,
                c.ecn_marked as f64,
            );
            f.gauge(
                "qosd_category_backlog_packets",
                &l,
                c.backlog.packets as f64,
            );
            f.gauge("qosd_category_backlog_bytes", &l, c.backlog.bytes as f64);
            f.gauge(
                "qosd_category_rate_bytes_per_second",
                &l,
                rates.get(i).copied().unwrap_or(0.0) / 8.0,
            );
            let h = seconds_histogram(
                &DELAY_BUCKET_BOUNDS_NS,
                &c.delay.cumulative(),
                c.delay.sum_ns,
            );
            f.histogram("qosd_category_queue_delay_seconds", &l, h);
        }
        accounting(&mut f, d, snap, layout);
        for (i, n) in snap.engine.decisions.iter().enumerate() {
            if let Some(slot) = decisions.get_mut(i) {
                *slot += n;
            }
        }
        let e = &snap.engine;
        for (kind, n) in [
            ("ip", e.ip_frames),
            ("non_ip", e.non_ip_frames),
            ("malformed", e.malformed_frames),
        ] {
            f.counter(
                "qosd_frames_total",
                &[("direction", d), ("kind", kind)],
                n as f64,
            );
        }
        f.counter(
            "qosd_dscp_marked_packets_total",
            &[("direction", d)],
            e.dscp_marked as f64,
        );
        if *dir == Direction::Download {
            let g = &e.isp_queue;
            f.gauge("qosd_isp_queue_seconds", &[], g.standing_ns as f64 / 1e9);
            f.counter("qosd_isp_queue_signals_total", &[], g.signals as f64);
            f.counter(
                "qosd_isp_queue_throttled_seconds_total",
                &[],
                g.throttled_ns as f64 / 1e9,
            );
            f.counter("qosd_isp_queue_gave_up_total", &[], g.gave_up as f64);
            let w = &e.window_clamp;
            f.counter("qosd_window_clamp_windows_total", &[], w.windows as f64);
            f.gauge("qosd_window_clamp_active", &[], f64::from(u8::from(w.full)));
            f.gauge(
                "qosd_window_clamp_allowance_seconds",
                &[],
                w.allowance_ns as f64 / 1e9,
            );
        } else {
            f.counter(
                "qosd_window_clamp_lowered_total",
                &[],
                e.window_clamp.lowered as f64,
            );
        }
        for (kind, n) in Holder::KINDS.iter().zip(e.dpi_refusals) {
            f.counter(
                "qosd_dpi_refusals_total",
                &[("direction", d), ("kind", kind)],
                n as f64,
            );
        }
        let io = &snap.io;
        f.counter(
            "qosd_interface_received_frames_total",
            &[("interface", rx_if)],
            io.rx_frames as f64,
        );
        f.counter(
            "qosd_interface_received_bytes_total",
            &[("interface", rx_if)],
            io.rx_bytes as f64,
        );
        f.counter(
            "qosd_interface_transmitted_frames_total",
            &[("interface", tx_if)],
            io.tx_frames as f64,
        );
        f.counter(
            "qosd_interface_transmitted_bytes_total",
            &[("interface", tx_if)],
            io.tx_bytes as f64,
        );
        for reason in DropReason::ALL {
            let (p, b) = shaper_drops
                .get(reason.as_str())
                .copied()
                .unwrap_or_default();
            f.counter(
                "qosd_dropped_packets_total",
                &[("direction", d), ("reason", reason.as_str())],
                p as f64,
            );
            f.counter(
                "qosd_dropped_bytes_total",
                &[("direction", d), ("reason", reason.as_str())],
                b as f64,
            );
        }
        for (reason, p, b) in [
            ("oversized", io.oversized, io.oversized_bytes),
            ("tx_error", io.tx_errors, io.tx_error_bytes),
            ("tx_queue_full", io.tx_queue_full, io.tx_queue_full_bytes),
            ("egress_down", io.egress_down, io.egress_down_bytes),
        ] {
            f.counter(
                "qosd_dropped_packets_total",
                &[("direction", d), ("reason", reason)],
                p as f64,
            );
            f.counter(
                "qosd_dropped_bytes_total",
                &[("direction", d), ("reason", reason)],
                b as f64,
            );
        }
        f.counter(
            "qosd_checksums_completed_total",
            &[("direction", d)],
            io.checksum_completed as f64,
        );
        f.counter(
            "qosd_datapath_bell_rings_total",
            &[("direction", d)],
            io.bell_rings as f64,
        );
        for (iface, kind, n) in [
            (rx_if, "rx_error", io.rx_errors),
            (rx_if, "oversized_frame", io.oversized),
            (rx_if, "kernel_queue_drop", io.kernel_drops),
            (tx_if, "tx_error", io.tx_errors),
            (tx_if, "tx_queue_full", io.tx_queue_full),
            (tx_if, "tx_retry", io.tx_retries),
            (tx_if, "egress_down", io.egress_down),
        ] {
            f.counter(
                "qosd_datapath_errors_total",
                &[("interface", iface), ("kind", kind)],
                n as f64,
            );
        }
    }
    for (i, cat) in cfg.category.iter().enumerate() {
        let n = v.flows.by_category.get(i).copied().unwrap_or(0);
        f.gauge(
            "qosd_category_active_flows",
            &[("category", cat.name.as_str())],
            n as f64,
        );
    }
    for (kind, n) in DecidedBy::KINDS.iter().zip(decisions) {
        f.counter(
            "qosd_classifier_decisions_total",
            &[("decided_by", kind)],
            n as f64,
        );
    }
    f.gauge("qosd_flows", &[], v.flows.active as f64);
    f.counter("qosd_flows_created_total", &[], v.flows.created as f64);
    f.counter("qosd_flow_evictions_total", &[], v.flows.evicted as f64);
    f.counter("qosd_flows_expired_total", &[], v.flows.expired as f64);
    f.gauge("qosd_dns_cache_entries", &[], v.flows.dns_entries as f64);
    f.counter(
        "qosd_dns_cache_evictions_total",
        &[],
        v.flows.dns_evictions as f64,
    );
    f.gauge(
        "qosd_dpi_memory_bytes",
        &[],
        v.flows.dpi_memory_bytes as f64,
    );
    f.gauge(
        "qosd_dpi_memory_limit_bytes",
        &[],
        v.flows.dpi_memory_limit_bytes as f64,
    );
    for (result, n) in [("success", v.reloads[0]), ("failure", v.reloads[1])] {
        f.counter("qosd_config_reloads_total", &[("result", result)], n as f64);
    }
    for (source, n) in Source::ALL.iter().zip(v.link.samples) {
        f.counter(
            "qosd_wan_delay_samples_total",
            &[("source", source.as_str())],
            n as f64,
        );
    }
    f.families
}

/// A histogram in seconds from bucket bounds in nanoseconds, the
/// cumulative counts per bound (the last, +Inf, is the sample count) and
/// the samples' sum in nanoseconds.
fn seconds_histogram(bounds_ns: &[u64], cumulative: &[u64], sum_ns: u64) -> Histogram {
    let mut h = Histogram::default();
    h.set_sample_count(cumulative.last().copied().unwrap_or(0));
    h.set_sample_sum(sum_ns as f64 / 1e9);
    h.set_bucket(
        bounds_ns
            .iter()
            .zip(cumulative)
            .map(|(bound, n)| {
                let mut b = Bucket::default();
                b.set_upper_bound(*bound as f64 / 1e9);
                b.set_cumulative_count(*n);
                b
            })
            .collect(),
    );
    h
}

/// The per-app and TCP-quality families of direction `d`'s snapshot,
/// labelled from `layout`, the configuration its counters were taken in.
fn accounting(f: &mut Families, d: &str, snap: &Snapshot, layout: &Config) {
    let a = &snap.accounting;
    let category = |i: usize| layout.category.get(i).map(|c| c.name.as_str());
    // Exported from the start (0 before any traffic), unlike the per-app
    // cells: an alert on its rate needs the series to exist.
    let unclassified: u64 = a
        .apps()
        .filter(|(app, _, _)| app.is_none())
        .map(|(_, _, n)| n.bytes)
        .sum();
    f.counter(
        "qosd_unclassified_bytes_total",
        &[("direction", d)],
        unclassified as f64,
    );
    // Only the cells that counted something: most apps go to one
    // category, and the catalog's apps times the categories would
    // otherwise be thousands of series of zeros.
    for (app, cat, n) in a.apps() {
        let name = match app {
            None => Some("unknown"),
            Some(i) => layout.catalog.apps.get(i).map(|a| a.name.as_str()),
        };
        let (Some(name), Some(cat)) = (name, category(cat)) else {
            continue;
        };
        let l = [("direction", d), ("app", name), ("category", cat)];
        f.counter("qosd_app_packets_total", &l, n.packets as f64);
        f.counter("qosd_app_bytes_total", &l, n.bytes as f64);
    }
    for (i, s) in a.segments().iter().enumerate() {
        let Some(cat) = category(i) else { continue };
        let l = [("direction", d), ("category", cat)];
        f.counter("qosd_tcp_data_packets_total", &l, s.data as f64);
        f.counter(
            "qosd_tcp_retransmitted_packets_total",
            &l,
            s.retransmitted as f64,
        );
    }
    // The download thread measures both directions' round trips (it has
    // the meter); the upload thread's tables are empty.
    for dir in Direction::BOTH {
        for (i, h) in a.rtt(dir).iter().enumerate() {
            let Some(cat) = category(i) else { continue };
            let l = [("direction", dir.as_str()), ("category", cat)];
            let h = seconds_histogram(&RTT_BUCKET_BOUNDS_NS, &h.cumulative(), h.sum_ns);
            f.histogram("qosd_tcp_rtt_seconds", &l, h);
        }
    }
}

/// A registry holding qosd's collector over `source`.
pub fn registry(source: Arc<dyn MetricsSource>) -> Registry {
    let registry = Registry::new();
    let descs = FAMILIES
        .iter()
        .filter_map(|(name, help)| {
            Desc::new(
                (*name).to_owned(),
                (*help).to_owned(),
                Vec::new(),
                HashMap::new(),
            )
            .ok()
        })
        .collect();
    // Registering fails only for duplicate descriptors, which FAMILIES has not.
    let _ = registry.register(Box::new(QosdCollector { source, descs }));
    registry
}

/// The text exposition of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// The text exposition of one view (for `qosd simulate --prometheus`).
pub fn encode_view(v: &MetricsView) -> String {
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&build(v), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests;
