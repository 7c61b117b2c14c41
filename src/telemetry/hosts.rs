//! The per-host view: what each LAN computer sends and receives, by
//! category, with its addresses, flows and busiest apps
//! (`/api/v1/hosts`, `qosd top`, `metrics.top_hosts`). Rates come from
//! consecutive snapshots of the data path's host counters, once a second.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use serde::Serialize;

use super::snapshot::Snapshot;
use crate::classify::matcher::AppId;
use crate::config::{Config, MAX_CATEGORIES};
use crate::engine::Shared;
use crate::engine::hosts::HostCounters;
use crate::time::Instant;

/// A host: its MAC address and VLAN.
type HostKey = ([u8; 6], Option<u16>);

/// Most apps listed per host.
const TOP_APPS: usize = 5;

/// One direction's host bytes at one moment.
#[derive(Debug)]
struct Sample {
    at: Instant,
    layout: Option<Arc<Config>>,
    bytes: HashMap<HostKey, [u64; MAX_CATEGORIES]>,
}

/// Per-host rates and the samples they come from.
#[derive(Debug, Default)]
pub(super) struct HostRateState {
    last: [Option<Sample>; 2],
    /// Bits/s per host and category (layout of `last`), per direction.
    rates: [HashMap<HostKey, [f64; MAX_CATEGORIES]>; 2],
}

impl HostRateState {
    /// Takes the snapshots as the new samples. Over a reload (another
    /// category layout) a direction keeps its rates for one update.
    pub(super) fn update(&mut self, snaps: &[Snapshot; 2]) {
        for (d, snap) in snaps.iter().enumerate() {
            let cur = Sample {
                at: snap.at,
                layout: snap.config.clone(),
                bytes: snap
                    .hosts
                    .iter()
                    .map(|h| ((h.mac, h.vlan), h.bytes))
                    .collect(),
            };
            let (Some(last), Some(rates)) = (self.last.get_mut(d), self.rates.get_mut(d)) else {
                continue;
            };
            if let Some(old) = last.as_ref() {
                let secs = cur.at.nanos_since(old.at) as f64 / 1e9;
                let same_layout = match (&cur.layout, &old.layout) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    _ => true,
                };
                if secs > 0.0 && same_layout {
                    rates.clear();
                    for (k, now) in &cur.bytes {
                        let before = old.bytes.get(k).copied().unwrap_or([0; MAX_CATEGORIES]);
                        let mut r = [0.0; MAX_CATEGORIES];
                        for ((r, n), b) in r.iter_mut().zip(now).zip(&before) {
                            *r = n.saturating_sub(*b) as f64 * 8.0 / secs;
                        }
                        rates.insert(*k, r);
                    }
                }
            }
            *last = Some(cur);
        }
    }

    fn rate(&self, d: usize, key: &HostKey) -> Option<&[f64; MAX_CATEGORIES]> {
        self.rates.get(d).and_then(|r| r.get(key))
    }
}

/// Upload and download figures of a host.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct UpDown<T> {
    /// From the LAN to the Internet.
    pub upload: T,
    /// From the Internet to the LAN.
    pub download: T,
}

/// A host's rate in one category.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostCategory {
    /// The category.
    pub name: String,
    /// Bits/s each way over the last second.
    pub rate_bps: UpDown<f64>,
}

/// An app's bytes on a host's flows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostApp {
    /// The app, or "unknown".
    pub app: String,
    /// Bytes both ways of the host's active flows with it.
    pub bytes: u64,
}

/// One LAN computer, as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostSummary {
    /// Its MAC address ("02:00:c6:12:00:0a").
    pub mac: String,
    /// Its VLAN, if tagged.
    pub vlan: Option<u16>,
    /// The LAN addresses it used lately.
    pub addresses: Vec<String>,
    /// Bits/s each way over the last second.
    pub rate_bps: UpDown<f64>,
    /// Bytes each way since qosd started (or since the host was last
    /// recycled out of the table).
    pub bytes: UpDown<u64>,
    /// Rates per category, busiest first; categories it does not use left
    /// out.
    pub categories: Vec<HostCategory>,
    /// Its flows in the flow table now.
    pub flows: u64,
    /// The apps of those flows with the most bytes, most first.
    pub top_apps: Vec<HostApp>,
    /// Seconds since its last packet either way.
    pub idle_seconds: f64,
    #[serde(skip)]
    key: HostKey,
    #[serde(skip)]
    raw_addresses: Vec<[u8; 16]>,
}

impl HostSummary {
    /// Its total rate both ways.
    pub fn total_bps(&self) -> f64 {
        self.rate_bps.upload + self.rate_bps.download
    }
}

/// "aa:bb:cc:dd:ee:ff".
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An address as text (IPv4-mapped addresses as IPv4).
fn address_string(a: &[u8; 16]) -> String {
    let v6 = Ipv6Addr::from(*a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4).to_string(),
        None if *a == [0; 16] => IpAddr::V4(Ipv4Addr::UNSPECIFIED).to_string(),
        None => IpAddr::V6(v6).to_string(),
    }
}

/// Every host of both snapshots, busiest first (rate, then bytes), with
/// the rates of `rates`; `now` dates the idle time. Flows and apps are
/// left empty: [`count_flows`] fills them.
pub(super) fn summarise(
    snaps: &[Snapshot; 2],
    rates: &HostRateState,
    now: Instant,
) -> Vec<HostSummary> {
    let mut by_key: HashMap<HostKey, HostSummary> = HashMap::new();
    let mut per_cat: HashMap<HostKey, HashMap<String, UpDown<f64>>> = HashMap::new();
    for (d, snap) in snaps.iter().enumerate() {
        for h in &snap.hosts {
            let key = (h.mac, h.vlan);
            let s = by_key.entry(key).or_insert_with(|| new_summary(h));
            for a in h.addresses() {
                if !s.raw_addresses.contains(a) {
                    s.raw_addresses.push(*a);
                }
            }
            s.idle_seconds = s
                .idle_seconds
                .min(now.nanos_since(h.last_seen) as f64 / 1e9);
            let total = h.total_bytes();
            let rate = rates.rate(d, &key);
            let sum: f64 = rate.map_or(0.0, |r| r.iter().sum());
            if d == 0 {
                (s.bytes.upload, s.rate_bps.upload) = (total, sum);
            } else {
                (s.bytes.download, s.rate_bps.download) = (total, sum);
            }
            let cats = per_cat.entry(key).or_default();
            let layout = snap.config.as_ref();
            for (i, r) in rate.into_iter().flatten().enumerate() {
                let Some(name) = layout.and_then(|c| c.category.get(i)).map(|c| &c.name) else {
                    continue;
                };
                if *r <= 0.0 {
                    continue;
                }
                let e = cats.entry(name.clone()).or_default();
                if d == 0 {
                    e.upload = *r;
                } else {
                    e.download = *r;
                }
            }
        }
    }
    let mut out: Vec<HostSummary> = by_key
        .into_iter()
        .map(|(key, mut s)| {
            s.addresses = s.raw_addresses.iter().map(address_string).collect();
            let mut cats: Vec<HostCategory> = per_cat
                .remove(&key)
                .unwrap_or_default()
                .into_iter()
                .map(|(name, rate_bps)| HostCategory { name, rate_bps })
                .collect();
            cats.sort_by(|a, b| {
                let t = |c: &HostCategory| c.rate_bps.upload + c.rate_bps.download;
                t(b).total_cmp(&t(a)).then_with(|| a.name.cmp(&b.name))
            });
            s.categories = cats;
            s
        })
        .collect();
    out.sort_by(|a, b| {
        b.total_bps()
            .total_cmp(&a.total_bps())
            .then_with(|| {
                (b.bytes.upload + b.bytes.download).cmp(&(a.bytes.upload + a.bytes.download))
            })
            .then_with(|| a.mac.cmp(&b.mac))
    });
    out
}

fn new_summary(h: &HostCounters) -> HostSummary {
    HostSummary {
        mac: mac_string(&h.mac),
        vlan: h.vlan,
        addresses: Vec::new(),
        rate_bps: UpDown::default(),
        bytes: UpDown::default(),
        categories: Vec::new(),
        flows: 0,
        top_apps: Vec::new(),
        idle_seconds: f64::INFINITY,
        key: (h.mac, h.vlan),
        raw_addresses: Vec::new(),
    }
}

/// Fills each host's flow count and busiest apps from the flow table: a
/// flow belongs to the host one of whose addresses it has (on the host's
/// VLAN). Visits the whole table: not on a thread that must stay
/// responsive.
pub fn count_flows(shared: &Shared, hosts: &mut [HostSummary]) {
    let mut owner: HashMap<([u8; 16], u16), usize> = HashMap::new();
    for (i, h) in hosts.iter().enumerate() {
        for a in &h.raw_addresses {
            owner.entry((*a, h.key.1.unwrap_or(0))).or_insert(i);
        }
    }
    if owner.is_empty() {
        return;
    }
    let classifier = Arc::clone(&shared.installed().classifier);
    // Keyed by app id, named once at the end: no lock or allocation per
    // flow.
    let mut apps: Vec<HashMap<Option<AppId>, u64>> = vec![HashMap::new(); hosts.len()];
    shared.table.for_each(|k, f| {
        let Some(&i) = owner
            .get(&(k.lo, k.vlan))
            .or_else(|| owner.get(&(k.hi, k.vlan)))
        else {
            return;
        };
        if let Some(h) = hosts.get_mut(i) {
            h.flows += 1;
        }
        if let Some(m) = apps.get_mut(i) {
            *m.entry(f.value.app()).or_default() += f.total_bytes();
        }
    });
    for (h, m) in hosts.iter_mut().zip(apps) {
        let mut list: Vec<HostApp> = m
            .into_iter()
            .map(|(app, bytes)| HostApp {
                app: app
                    .and_then(|a| classifier.app_name(a))
                    .unwrap_or("unknown")
                    .to_owned(),
                bytes,
            })
            .collect();
        list.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.app.cmp(&b.app)));
        list.truncate(TOP_APPS);
        h.top_apps = list;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::hosts::HostTable;
    use crate::engine::hosts::tests::v4;

    fn snap(table: &HostTable, at_ms: u64) -> Snapshot {
        Snapshot {
            hosts: table.hosts().copied().collect(),
            at: Instant::from_nanos(at_ms * 1_000_000),
            ..Snapshot::default()
        }
    }

    #[test]
    fn rates_per_host_and_direction_from_two_snapshots() {
        let (mut up, mut down) = (HostTable::default(), HostTable::default());
        let a = [2, 0, 0, 0, 0, 0xa];
        let b = [2, 0, 0, 0, 0, 0xb];
        let t0 = Instant::ZERO;
        up.observe(1, a, None, Some(&v4(10)), 0, 1000, t0);
        down.observe(1, a, None, Some(&v4(10)), 0, 1000, t0);
        up.observe(2, b, None, Some(&v4(11)), 1, 1000, t0);
        let mut st = HostRateState::default();
        st.update(&[snap(&up, 0), snap(&down, 0)]);
        // One second later: A sent 125 000 bytes up, 250 000 down; B 12 500 up.
        up.observe(1, a, None, None, 0, 125_000, t0);
        down.observe(1, a, None, None, 0, 250_000, t0);
        up.observe(2, b, None, None, 1, 12_500, t0);
        let snaps = [snap(&up, 1000), snap(&down, 1000)];
        st.update(&snaps);
        let hosts = summarise(&snaps, &st, Instant::from_nanos(2_000_000_000));
        assert_eq!(hosts.len(), 2);
        let h = &hosts[0];
        assert_eq!(h.mac, "02:00:00:00:00:0a");
        assert_eq!(h.addresses, ["198.18.0.10"]);
        assert_eq!(
            h.rate_bps,
            UpDown {
                upload: 1e6,
                download: 2e6
            }
        );
        assert_eq!(
            h.bytes,
            UpDown {
                upload: 126_000,
                download: 251_000
            }
        );
        assert_eq!(
            (hosts[1].mac.as_str(), hosts[1].rate_bps.upload),
            ("02:00:00:00:00:0b", 1e5)
        );
        assert!((h.idle_seconds - 2.0).abs() < 1e-9);
    }

    #[test]
    fn macs_print_as_admins_write_them() {
        assert_eq!(mac_string(&[2, 0, 0xc6, 0x12, 0, 0xa]), "02:00:c6:12:00:0a");
        assert_eq!(address_string(&v4(10)), "198.18.0.10");
        let mut v6 = [0u8; 16];
        v6[0] = 0x20;
        v6[1] = 0x01;
        v6[15] = 0x10;
        assert_eq!(address_string(&v6), "2001::10");
    }
}
