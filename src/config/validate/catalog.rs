//! The app catalog (`config/apps.toml`, `classify.apps_file`): each app's
//! name, category, hosts and signatures; names are unique.

use std::collections::HashMap;
use std::str::FromStr;

use super::super::model::{App, Catalog, Match};
use super::super::raw::RawCatalog;
use super::super::units::HostPattern;
use super::Problems;
use super::conditions::{MatchScope, validate_match};
use super::values::parse_name;

/// Validates an app catalog.
pub(in crate::config) fn validate_catalog(raw: &RawCatalog, p: &mut Problems) -> Catalog {
    let mut apps: Vec<App> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, ra) in raw.app.iter().enumerate() {
        let key = format!("app[{i}]");
        let name = p.required(
            &format!("{key}.name"),
            &ra.name,
            "every app needs a name",
            parse_name,
        );
        let category = p.required(
            &format!("{key}.category"),
            &ra.category,
            "name the app's category",
            parse_name,
        );
        let description = ra
            .description
            .as_ref()
            .and_then(|v| p.text(&format!("{key}.description"), v))
            .unwrap_or_default();
        let hosts = p.list(&format!("{key}.hosts"), &ra.hosts, HostPattern::from_str);
        let signatures: Vec<Match> = ra
            .matches
            .iter()
            .enumerate()
            .map(|(j, m)| validate_match(m, &format!("{key}.match[{j}]"), p, MatchScope::Signature))
            .collect();
        if hosts.is_empty() && signatures.is_empty() {
            p.add(
                key.clone(),
                "an app needs hosts or at least one [[app.match]]",
            );
        }
        for (j, sig) in signatures.iter().enumerate() {
            if *sig == Match::default() {
                p.add(
                    format!("{key}.match[{j}]"),
                    "empty signature: it would match every flow",
                );
            }
        }
        let (Some(name), Some(category)) = (name, category) else {
            continue;
        };
        if let Some(first) = seen.get(&name) {
            p.add(
                format!("{key}.name"),
                format!("duplicate app name \"{name}\" (first defined at app[{first}])"),
            );
            continue;
        }
        seen.insert(name.clone(), i);
        apps.push(App {
            name,
            category,
            description,
            hosts,
            signatures,
        });
    }
    Catalog { apps }
}
