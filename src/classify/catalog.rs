//! The app catalog compiled for lookups: host names through two hash maps
//! (exact names and "*." suffixes, most specific first), signatures grouped
//! by strength (payload prefix and HTTP, IP range, port), the tuple ones
//! indexed by port.

use std::collections::HashMap;

use super::DecidedBy;
use super::dpi::http::Request;
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

/// A signature on what a plain-HTTP flow's first request or response
/// says, with its tuple conditions. The texts are kept in lower case and
/// compared with the message's ASCII-lowered: HTTP methods are compared
/// exactly.
#[derive(Debug, Clone)]
struct HttpSignature {
    matcher: Matcher,
    methods: Box<[Box<str>]>,
    path_suffixes: Box<[Box<[u8]>]>,
    user_agents: Box<[Box<[u8]>]>,
    content_types: Box<[Box<[u8]>]>,
    app: AppId,
}

fn lowered(items: &[String]) -> Box<[Box<[u8]>]> {
    items
        .iter()
        .map(|s| s.to_ascii_lowercase().into_bytes().into_boxed_slice())
        .collect()
}

/// `hay` ends with `suffix` (lower case), ASCII case ignored.
fn ends_with_ignore_case(hay: &[u8], suffix: &[u8]) -> bool {
    hay.len()
        .checked_sub(suffix.len())
        .and_then(|start| hay.get(start..))
        .is_some_and(|end| end.eq_ignore_ascii_case(suffix))
}

/// `hay` starts with `prefix` (lower case), ASCII case ignored.
fn starts_with_ignore_case(hay: &[u8], prefix: &[u8]) -> bool {
    hay.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

impl HttpSignature {
    /// Its request conditions hold for `req` (each list, when given, has
    /// an element that matches).
    fn request_matches(&self, req: &Request<'_>) -> bool {
        let path = req.path().as_bytes();
        let ua = req.user_agent.unwrap_or_default().as_bytes();
        (self.methods.is_empty() || self.methods.iter().any(|m| **m == *req.method))
            && (self.path_suffixes.is_empty()
                || self
                    .path_suffixes
                    .iter()
                    .any(|s| ends_with_ignore_case(path, s)))
            && (self.user_agents.is_empty()
                || (req.user_agent.is_some()
                    && self
                        .user_agents
                        .iter()
                        .any(|p| starts_with_ignore_case(ua, p))))
    }
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
    /// HTTP signatures on the first request (method, path, User-Agent).
    http_request: Vec<HttpSignature>,
    /// HTTP signatures on the first response (Content-Type).
    http_response: Vec<HttpSignature>,
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
                // An HTTP signature is matched when its exchange is read,
                // never on the tuple alone (its other conditions narrow it).
                if sig.has_http() {
                    let h = HttpSignature {
                        matcher: Matcher::new(sig, |n| ids.get(n).copied()),
                        methods: sig.http_method.iter().map(|m| m.as_str().into()).collect(),
                        path_suffixes: lowered(&sig.http_path_suffix),
                        user_agents: lowered(&sig.http_user_agent),
                        content_types: lowered(&sig.http_content_type),
                        app: id,
                    };
                    if sig.has_http_request() {
                        c.http_request.push(h);
                    } else {
                        c.http_response.push(h);
                    }
                    continue;
                }
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

    /// True when some signature reads a plain-HTTP flow's first request:
    /// its whole header block is then waited for, not only its Host.
    pub fn has_http_request_signatures(&self) -> bool {
        !self.http_request.is_empty()
    }

    /// True when some signature reads the Content-Type of a plain-HTTP
    /// flow's first response: a flow whose request named no app is then
    /// inspected until the response's headers.
    pub fn has_http_response_signatures(&self) -> bool {
        !self.http_response.is_empty()
    }

    /// The app of the first HTTP request signature, in catalog order, that
    /// `req` on the flow of `facts` matches.
    pub fn app_for_http_request(&self, facts: &FlowFacts<'_>, req: &Request<'_>) -> Option<AppId> {
        self.http_request
            .iter()
            .find(|s| s.request_matches(req) && s.matcher.eval(facts) == Answer::Yes)
            .map(|s| s.app)
    }

    /// The app of the first HTTP response signature, in catalog order,
    /// whose content types `media_type` (a response's, without parameters)
    /// starts with, on the flow of `facts`.
    pub fn app_for_http_content_type(
        &self,
        facts: &FlowFacts<'_>,
        media_type: &str,
    ) -> Option<AppId> {
        let ct = media_type.as_bytes();
        self.http_response
            .iter()
            .find(|s| {
                s.content_types
                    .iter()
                    .any(|p| starts_with_ignore_case(ct, p))
                    && s.matcher.eval(facts) == Answer::Yes
            })
            .map(|s| s.app)
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
