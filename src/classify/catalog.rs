//! The app catalog compiled for lookups: host names through two hash maps
//! (exact names and "*." suffixes, most specific first), signatures grouped
//! by strength (payload prefix, IP range, port).

use std::collections::HashMap;

use super::DecidedBy;
use super::matcher::{Answer, AppId, FlowFacts, Matcher};
use crate::config::{Catalog, CategoryId, Config};

/// One app as the classifier sees it.
#[derive(Debug, Clone)]
pub struct AppInfo {
    /// Catalog name.
    pub name: Box<str>,
    /// Its category in the running configuration; `None` when the
    /// configuration has no category of that name.
    pub category: Option<CategoryId>,
}

/// A signature: conditions plus, for payload signatures, the prefix.
#[derive(Debug, Clone)]
struct Signature {
    matcher: Matcher,
    prefix: Option<Box<[u8]>>,
    app: AppId,
}

/// The compiled catalog.
#[derive(Debug, Clone, Default)]
pub struct CompiledCatalog {
    apps: Vec<AppInfo>,
    exact: HashMap<Box<str>, AppId>,
    wildcard: HashMap<Box<str>, AppId>,
    payload: Vec<Signature>,
    ip_range: Vec<Signature>,
    port: Vec<Signature>,
}

/// Longest host name looked up (DNS names are at most 253 characters).
const MAX_HOST: usize = 253;

impl CompiledCatalog {
    /// Compiles `catalog` against the categories of `cfg`.
    pub fn new(catalog: &Catalog, cfg: &Config) -> Self {
        let mut c = CompiledCatalog::default();
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
                    app: id,
                };
                if s.prefix.is_some() {
                    c.payload.push(s);
                } else if s.matcher.has_cidrs {
                    c.ip_range.push(s);
                } else {
                    c.port.push(s);
                }
            }
        }
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
        let hit = |sigs: &[Signature]| {
            sigs.iter()
                .find(|s| s.matcher.eval(facts) == Answer::Yes)
                .map(|s| s.app)
        };
        hit(&self.ip_range)
            .map(|a| (a, DecidedBy::IpRange))
            .or_else(|| hit(&self.port).map(|a| (a, DecidedBy::Port)))
    }

    /// The app identified by the first bytes of a flow's payload.
    pub fn app_for_payload(&self, facts: &FlowFacts<'_>, payload: &[u8]) -> Option<AppId> {
        self.payload
            .iter()
            .find(|s| {
                s.prefix.as_deref().is_some_and(|p| payload.starts_with(p))
                    && s.matcher.eval(facts) == Answer::Yes
            })
            .map(|s| s.app)
    }
}
