//! The app catalog compiled for lookups: host names through two hash maps
//! (exact names and "*." suffixes, most specific first), signatures grouped
//! by strength (payload prefix, IP range, port), the tuple ones indexed by
//! port.

use std::collections::HashMap;

use super::DecidedBy;
use super::matcher::{Answer, AppId, FlowFacts, Matcher};
use super::port_index::PortIndex;
use crate::config::{Catalog, CategoryId, Config, PortRange};

/// One app as the classifier sees it.
#[derive(Debug, Clone)]
pub struct AppInfo {
    /// Catalog name.
    pub name: Box<str>,
    /// Its category in the running configuration; `None` when the
    /// configuration has no category of that name.
    pub category: Option<CategoryId>,
}

/// A signature: conditions plus, for payload signatures, the prefix and
/// the lengths the payload may have (any when empty).
#[derive(Debug, Clone)]
struct Signature {
    matcher: Matcher,
    prefix: Option<Box<[u8]>>,
    lengths: Box<[PortRange]>,
    app: AppId,
}

/// Signatures matched on a flow's tuple, with their candidates by port.
#[derive(Debug, Clone, Default)]
struct TupleSignatures {
    list: Vec<Signature>,
    by_port: PortIndex,
}

impl TupleSignatures {
    fn new(list: Vec<Signature>) -> Self {
        let ranges: Vec<_> = list.iter().map(|s| s.matcher.port_ranges()).collect();
        TupleSignatures {
            by_port: PortIndex::new(&ranges),
            list,
        }
    }

    /// The first signature, in catalog order, that matches `facts`.
    #[inline]
    fn first_match(&self, facts: &FlowFacts<'_>) -> Option<AppId> {
        let i = self.by_port.find(facts.src_port, facts.dst_port, |i| {
            self.list
                .get(usize::from(i))
                .is_some_and(|s| s.matcher.eval(facts) == Answer::Yes)
        })?;
        self.list.get(usize::from(i)).map(|s| s.app)
    }

    /// The same answer by scanning every signature, for tests.
    #[cfg(test)]
    fn first_match_linear(&self, facts: &FlowFacts<'_>) -> Option<AppId> {
        self.list
            .iter()
            .find(|s| s.matcher.eval(facts) == Answer::Yes)
            .map(|s| s.app)
    }
}

/// The compiled catalog.
#[derive(Debug, Clone, Default)]
pub struct CompiledCatalog {
    apps: Vec<AppInfo>,
    exact: HashMap<Box<str>, AppId>,
    wildcard: HashMap<Box<str>, AppId>,
    payload: Vec<Signature>,
    ip_range: TupleSignatures,
    port: TupleSignatures,
}

/// Longest host name looked up (DNS names are at most 253 characters).
const MAX_HOST: usize = 253;

impl CompiledCatalog {
    /// Compiles `catalog` against the categories of `cfg`.
    pub fn new(catalog: &Catalog, cfg: &Config) -> Self {
        let mut c = CompiledCatalog::default();
        let (mut ip_range, mut port) = (Vec::new(), Vec::new());
        let ids: HashMap<&str, AppId> = catalog
            .apps
            .iter()
            .enumerate()
            .filter_map(|(i, a)| Some((a.name.as_str(), AppId::try_from(i).ok()?)))
            .collect();
        for (i, app) in catalog.apps.iter().enumerate() {
            let Ok(id) = AppId::try_from(i) else { break };
            c.apps.push(AppInfo {
                name: app.name.as_str().into(),
                category: cfg.category_id(&app.category),
            });
            // Later apps (the admin's file) override earlier patterns.
            for h in &app.hosts {
                let map = if h.is_wildcard() {
                    &mut c.wildcard
                } else {
                    &mut c.exact
                };
                map.insert(h.name().into(), id);
            }
            for sig in &app.signatures {
                let s = Signature {
                    matcher: Matcher::new(sig, |n| ids.get(n).copied()),
                    prefix: sig.payload_prefix.as_deref().map(Into::into),
                    lengths: sig.payload_len.as_slice().into(),
                    app: id,
                };
                if s.prefix.is_some() {
                    c.payload.push(s);
                } else if s.matcher.has_cidrs {
                    ip_range.push(s);
                } else {
                    port.push(s);
                }
            }
        }
        c.ip_range = TupleSignatures::new(ip_range);
        c.port = TupleSignatures::new(port);
        c
    }

    /// The app with id `id`.
    pub fn app(&self, id: AppId) -> Option<&AppInfo> {
        self.apps.get(usize::from(id))
    }

    /// The id of the app named `name`.
    pub fn app_id(&self, name: &str) -> Option<AppId> {
        self.apps
            .iter()
            .position(|a| &*a.name == name)
            .and_then(|i| AppId::try_from(i).ok())
    }

    /// Number of apps.
    pub fn len(&self) -> usize {
        self.apps.len()
    }

    /// True when the catalog has no app.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// The app whose host pattern matches `host` most specifically.
    pub fn app_for_host(&self, host: &str) -> Option<AppId> {
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() || host.len() > MAX_HOST {
            return None;
        }
        let mut buf = [0u8; MAX_HOST];
        let lower = buf.get_mut(..host.len())?;
        lower.copy_from_slice(host.as_bytes());
        lower.make_ascii_lowercase();
        let lower = std::str::from_utf8(lower).ok()?;
        if let Some(&id) = self.exact.get(lower) {
            return Some(id);
        }
        // "*.example.com" matches names under it: try each parent domain,
        // longest (most specific) first.
        let mut rest = lower;
        while let Some(dot) = rest.find('.') {
            rest = rest.get(dot + 1..)?;
            if let Some(&id) = self.wildcard.get(rest) {
                return Some(id);
            }
        }
        None
    }

    /// The app identified by the flow's tuple (IP-range signatures, then
    /// port signatures), with how.
    pub fn app_for_tuple(&self, facts: &FlowFacts<'_>) -> Option<(AppId, DecidedBy)> {
        self.ip_range
            .first_match(facts)
            .map(|a| (a, DecidedBy::IpRange))
            .or_else(|| self.port.first_match(facts).map(|a| (a, DecidedBy::Port)))
    }

    /// [`CompiledCatalog::app_for_tuple`] by scanning every signature, for
    /// tests of the index.
    #[cfg(test)]
    pub fn app_for_tuple_linear(&self, facts: &FlowFacts<'_>) -> Option<(AppId, DecidedBy)> {
        self.ip_range
            .first_match_linear(facts)
            .map(|a| (a, DecidedBy::IpRange))
            .or_else(|| {
                self.port
                    .first_match_linear(facts)
                    .map(|a| (a, DecidedBy::Port))
            })
    }

    /// The app identified by the first bytes of a flow's payload.
    pub fn app_for_payload(&self, facts: &FlowFacts<'_>, payload: &[u8]) -> Option<AppId> {
        self.payload
            .iter()
            .find(|s| {
                s.prefix.as_deref().is_some_and(|p| payload.starts_with(p))
                    && (s.lengths.is_empty()
                        || u16::try_from(payload.len())
                            .is_ok_and(|n| s.lengths.iter().any(|r| r.contains(n))))
                    && s.matcher.eval(facts) == Answer::Yes
            })
            .map(|s| s.app)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::config;
    use std::net::IpAddr;

    fn addr(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        }
    }

    /// Names from the generated community catalog (config/apps-community.toml)
    /// reach their apps and categories; names a hand-written app lists keep
    /// the hand-written app.
    #[test]
    fn community_hosts_classify_to_their_categories() {
        let cfg = config("");
        let catalog = CompiledCatalog::new(&cfg.catalog, &cfg);
        for (host, app, category) in [
            ("upos-sz-mirrorcos.bilivideo.com", "bilibili", "streaming"),
            ("www.bilibili.com", "bilibili", "streaming"),
            ("api.douyin.com", "douyin", "streaming"),
            ("vod-abematv.akamaized.net", "abema", "streaming"),
            ("www.hotstar.com", "hotstar", "streaming"),
            ("www.coursera.org", "coursera", "streaming"),
            ("img-c.udemycdn.com", "udemy", "streaming"),
            ("g.alicdn.com", "", ""),
            ("im.dingtalk.com", "dingtalk", "business"),
            ("open.feishu.cn", "lark", "business"),
            ("mail.yandex.ru", "yandex", "business"),
            ("mail.zoho.com", "zoho", "business"),
            ("mail.163.com", "netease-mail", "business"),
            ("acs.webex.co.uk", "webex", "business"),
            ("swcdn.apple.com", "apple-software-update", "bulk"),
            ("gs.apple.com", "apple-software-update", "bulk"),
            ("dl.google.com", "google-downloads", "bulk"),
            ("play.googleapis.com", "google", "browsing"),
            ("p05.upd.kaspersky.com", "kaspersky", "bulk"),
            ("update.eset.com", "eset", "bulk"),
            ("deb.debian.org", "linux-updates", "bulk"),
            ("ftp.debian.org", "linux-updates", "bulk"),
            ("steambroadcast.akamaized.net", "steam", "bulk"),
            ("origin-a.akamaihd.net", "ea-app", "bulk"),
            // Hand-written apps keep their names and categories.
            ("zoom.us", "zoom", "business"),
            ("rr3---sn-h0jeen7y.googlevideo.com", "youtube", "streaming"),
            ("teams.microsoft.com", "teams", "business"),
        ] {
            let found = catalog
                .app_for_host(host)
                .and_then(|id| catalog.app(id))
                .map(|a| &*a.name);
            if app.is_empty() {
                assert_eq!(found, None, "{host}");
                continue;
            }
            assert_eq!(found, Some(app), "{host}");
            let cat = cfg.catalog.app(app).map(|a| a.category.as_str());
            assert_eq!(cat, Some(category), "{host}");
        }
    }

    /// The port index gives the embedded catalog's answer of a full scan
    /// for every protocol, at every port where a signature's range starts
    /// or ends (and next to it), in each of its address ranges and outside.
    #[test]
    fn indexed_lookup_agrees_with_a_full_scan() {
        let cfg = config("");
        let catalog = CompiledCatalog::new(&cfg.catalog, &cfg);
        let sigs = cfg.catalog.apps.iter().flat_map(|a| &a.signatures);
        let mut ports = vec![0u16, 1, 80, 443, 8080, 40000, 65535];
        let mut addrs = vec![
            addr("192.168.1.10".parse().unwrap()),
            addr("2001:db8::1".parse().unwrap()),
        ];
        for s in sigs {
            for r in s.ports.iter().chain(&s.src_ports).chain(&s.dst_ports) {
                ports.extend([r.first, r.last]);
                ports.extend(r.first.checked_sub(1));
                ports.extend(r.last.checked_add(1));
            }
            for n in s.cidrs.iter().chain(&s.src_cidrs).chain(&s.dst_cidrs) {
                addrs.push(addr(n.network()));
            }
        }
        ports.sort_unstable();
        ports.dedup();
        addrs.sort_unstable();
        addrs.dedup();
        let local = addr("192.168.1.10".parse().unwrap());
        let mut checked = 0;
        let mut matched = 0;
        for protocol in [6u8, 17, 47, 50] {
            for &port in &ports {
                for &remote in &addrs {
                    for (src_port, dst_port) in [(50000, port), (port, 443)] {
                        let f = FlowFacts {
                            protocol,
                            src: local,
                            src_port,
                            dst: remote,
                            dst_port,
                            dscp: 0,
                            vlan: None,
                            direction: crate::config::Direction::Upload,
                            host: None,
                            app: None,
                            settled: true,
                        };
                        let got = catalog.app_for_tuple(&f);
                        assert_eq!(got, catalog.app_for_tuple_linear(&f), "{f:?}");
                        checked += 1;
                        matched += usize::from(got.is_some());
                    }
                }
            }
        }
        eprintln!("{checked} lookups, {matched} matched");
        // The sweep exercised both outcomes, many times.
        assert!(checked > 10_000 && matched > 1_000, "{checked} {matched}");
    }
}
