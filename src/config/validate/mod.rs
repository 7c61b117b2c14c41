//! Turns a [`RawConfig`] into a [`Config`], collecting every problem with its
//! key path instead of stopping at the first.
//!
//! One file per section of the configuration file, in the order they are
//! checked (which is the order problems are reported in): `link`
//! (`[interfaces]`, `[link]`), `categories` (`[[category]]`,
//! `default_category`), `rules` (`[[rule]]`, with `conditions`, shared with
//! the catalog's signatures), `classify`, `daemon` (the sections read at
//! start-up only), `flows` and `autorate`; `catalog` checks an app catalog. `problems`
//! collects what is wrong; `values` parses the scalars several sections
//! share.

mod autorate;
mod catalog;
mod categories;
mod classify;
mod conditions;
mod daemon;
mod flows;
mod link;
mod problems;
mod rules;
mod values;

use std::path::Path;

use super::model::Config;
use super::raw::RawConfig;

pub(super) use catalog::validate_catalog;
pub use classify::{DEFAULT_DPI_MEMORY, MAX_DPI_MEMORY};
pub use daemon::{DEFAULT_API_LISTEN, DEFAULT_METRICS_LISTEN};
pub(super) use problems::Problems;

/// Validates `raw`, read from `file`. Relative paths in it are resolved
/// against the file's directory.
pub(super) fn validate(raw: &RawConfig, file: &str, problems: &mut Problems) -> Option<Config> {
    let p = problems;
    let base_dir = Path::new(file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();

    let interfaces = link::interfaces(&raw.interfaces, p);
    let rates = link::link(&raw.link, p);
    let cats = categories::categories(&raw.category, p);
    categories::check_rates(&cats, rates.link(), p);
    let default_category = categories::default_category(&raw.default_category, &cats, p);
    let rules = rules::rules(&raw.rule, &cats, p);
    let classify = classify::classify(&raw.classify, &cats, &base_dir, p);
    let datapath = daemon::datapath(&raw.datapath, p);
    let daemon = daemon::daemon(&raw.daemon, &interfaces, p);
    let metrics = daemon::metrics(&raw.metrics, p);
    let api = daemon::api(&raw.api, &base_dir, p);
    let flows = flows::flows(&raw.flows, p);
    let shaper = flows::shaper(&raw.shaper, p);
    let autorate = autorate::autorate(&raw.autorate, rates.link().as_ref(), p);

    let (Some(link), Some(default_category)) = (rates.link(), default_category) else {
        return None;
    };
    if !p.list.is_empty() {
        return None;
    }
    Some(Config {
        default_category,
        interfaces,
        link,
        category: cats.list,
        rule: rules,
        classify,
        datapath,
        daemon,
        metrics,
        api,
        flows,
        shaper,
        autorate,
        source: file.to_owned(),
        catalog: Default::default(),
    })
}
