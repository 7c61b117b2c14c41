//! Configuration: the TOML model, loading (file or embedded default, plus
//! `QOSD_`-prefixed environment overrides) and whole-file validation.
//!
//! Loading never stops at the first problem: every error carries the file,
//! the key path (`category[2].min`) and what is wrong, and all are returned
//! together. The running daemon only ever sees a [`Config`] that passed.

pub mod catalog_report;
mod model;
mod raw;
pub mod units;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, LazyLock};

pub use model::{
    Api, App, Autorate, Backend, Catalog, Category, CategoryId, Classify, Config, Daemon, Datapath,
    Fairness, Flows, Interfaces, Link, MAX_CATEGORIES, Match, Metrics, PerDirection, Rule,
    ShaperOptions,
};
pub use units::{Bandwidth, ByteSize, Direction, Dscp, HostPattern, PortRange, Protocol, Rate};
pub use validate::{
    DEFAULT_API_LISTEN, DEFAULT_DPI_MEMORY, DEFAULT_METRICS_LISTEN, MAX_DPI_MEMORY,
};

/// The default configuration shipped inside the binary.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../config/qosd.toml");

/// The name used for the embedded configuration in messages.
pub const EMBEDDED_NAME: &str = "<embedded qosd.toml>";

/// Prefix of environment variables that override configuration keys:
/// `QOSD_LINK__UPLOAD="30 Mbit"` sets `link.upload` (sections are separated
/// by a double underscore).
pub const ENV_PREFIX: &str = "QOSD";

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file it was read from.
    pub file: String,
    /// The key path, e.g. `category[2].min`; empty for file-level problems.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

/// Every problem found in a configuration (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    fn single(file: &str, key: &str, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            file: file.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }])
    }
}

/// Where environment overrides come from.
#[derive(Debug, Clone, Default)]
pub enum Env {
    /// The process environment.
    #[default]
    Process,
    /// No overrides.
    None,
    /// These variables (for tests).
    Map(HashMap<String, String>),
}

/// Loads and validates the file at `path`, applying environment overrides.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    read_and_load(path).1
}

/// Reads the file at `path` and loads it like [`load_file`]; also returns
/// the text it read (even when it is invalid), so a reloading caller can
/// later tell whether the file changed since.
pub fn read_and_load(path: &Path) -> (Option<String>, Result<Config, ConfigErrors>) {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let loaded = load_str(&name, &text, &Env::Process);
            (Some(text), loaded)
        }
        Err(e) => (
            None,
            Err(ConfigErrors::single(
                &name,
                "",
                format!("cannot read the file: {e}"),
            )),
        ),
    }
}

/// Loads and validates the embedded default, applying environment overrides.
pub fn load_embedded() -> Result<Config, ConfigErrors> {
    load_str(EMBEDDED_NAME, DEFAULT_CONFIG_TOML, &Env::Process)
}

/// Loads `path` if given, else the embedded default.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    match path {
        Some(p) => load_file(p),
        None => load_embedded(),
    }
}

/// Loads and validates TOML `text`, naming it `name` in errors.
pub fn load_str(name: &str, text: &str, env: &Env) -> Result<Config, ConfigErrors> {
    let mut problems = validate::Problems::default();
    let raw: Option<raw::RawConfig> = read_raw(text, env, &mut problems);
    let config = raw.and_then(|raw| validate::validate(&raw, name, &mut problems));
    let mut errors = to_errors(name, problems);
    let Some(mut config) = config.filter(|_| errors.is_empty()) else {
        return Err(ConfigErrors(errors));
    };
    match load_catalog(config.classify.apps_file.as_deref()) {
        Ok(catalog) => config.catalog = Arc::new(catalog),
        Err(e) => errors.extend(e.0),
    }
    for (i, rule) in config.rule.iter().enumerate() {
        for (j, app) in rule.when.apps.iter().enumerate() {
            if config.catalog.app(app).is_none() {
                errors.push(ConfigError {
                    file: name.to_owned(),
                    key: format!("rule[{i}].apps[{j}]"),
                    message: format!("unknown app \"{app}\" (see `qosd apps` for the catalog)"),
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The built-in app catalog (`config/apps.toml`).
pub const DEFAULT_APPS_TOML: &str = include_str!("../../config/apps.toml");

/// The name used for the embedded catalog in messages.
pub const EMBEDDED_APPS_NAME: &str = "<embedded apps.toml>";

/// The built-in catalog generated from a public per-service domain list
/// (`config/apps-community.toml`, see `deploy/catalog/`), loaded after
/// [`DEFAULT_APPS_TOML`] by [`merge_community`].
pub const COMMUNITY_APPS_TOML: &str = include_str!("../../config/apps-community.toml");

/// The name used for the embedded community catalog in messages.
pub const EMBEDDED_COMMUNITY_NAME: &str = "<embedded apps-community.toml>";

/// Parses and validates an app catalog.
pub fn load_catalog_str(name: &str, text: &str) -> Result<Catalog, ConfigErrors> {
    let mut problems = validate::Problems::default();
    let raw: Option<raw::RawCatalog> = read_raw(text, &Env::None, &mut problems);
    let catalog = raw.map(|raw| validate::validate_catalog(&raw, &mut problems));
    let errors = to_errors(name, problems);
    match catalog {
        Some(c) if errors.is_empty() => Ok(c),
        _ => Err(ConfigErrors(errors)),
    }
}

/// Adds the generated `community` catalog to the hand-written `hand` one.
/// The hand-written catalog wins: a host pattern it already lists (for any
/// app) is dropped from the community app; a community app named like a
/// hand-written one adds its remaining hosts to it (category and
/// signatures stay); other community apps are appended, if any host is
/// left to them.
pub fn merge_community(hand: &mut Catalog, community: Catalog) {
    let listed: std::collections::HashSet<HostPattern> = hand
        .apps
        .iter()
        .flat_map(|a| a.hosts.iter().cloned())
        .collect();
    for mut app in community.apps {
        app.hosts.retain(|h| !listed.contains(h));
        match hand.apps.iter_mut().find(|a| a.name == app.name) {
            Some(existing) => existing.hosts.append(&mut app.hosts),
            None if !app.hosts.is_empty() || !app.signatures.is_empty() => hand.apps.push(app),
            None => {}
        }
    }
}

/// The built-in catalog (`config/apps.toml` merged with
/// `config/apps-community.toml`, see [`merge_community`]).
pub fn builtin_catalog() -> Result<Catalog, ConfigErrors> {
    let mut catalog = load_catalog_str(EMBEDDED_APPS_NAME, DEFAULT_APPS_TOML)?;
    let community = load_catalog_str(EMBEDDED_COMMUNITY_NAME, COMMUNITY_APPS_TOML)?;
    merge_community(&mut catalog, community);
    Ok(catalog)
}

/// The built-in catalog, plus the apps of `extra` (which replace built-in
/// apps of the same name).
pub fn load_catalog(extra: Option<&Path>) -> Result<Catalog, ConfigErrors> {
    static EMBEDDED: LazyLock<Result<Catalog, ConfigErrors>> = LazyLock::new(builtin_catalog);
    let mut catalog = EMBEDDED.clone()?;
    if let Some(path) = extra {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::single(&name, "", format!("cannot read the app catalog: {e}"))
        })?;
        for app in load_catalog_str(&name, &text)?.apps {
            match catalog.apps.iter_mut().find(|a| a.name == app.name) {
                Some(existing) => *existing = app,
                None => catalog.apps.push(app),
            }
        }
    }
    Ok(catalog)
}

/// Deserializes `text` (plus environment overrides) into a raw model,
/// recording unknown keys and structural errors in `problems`.
fn read_raw<T: serde::de::DeserializeOwned>(
    text: &str,
    env: &Env,
    problems: &mut validate::Problems,
) -> Option<T> {
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml));
    let environment = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("_")
        .separator("__");
    builder = match env {
        Env::Process => builder.add_source(environment),
        Env::None => builder,
        Env::Map(map) => {
            builder.add_source(environment.source(Some(map.clone().into_iter().collect())))
        }
    };
    let merged = match builder.build() {
        Ok(m) => m,
        Err(e) => {
            problems.list.push((String::new(), syntax_message(&e)));
            return None;
        }
    };
    let mut unknown: Vec<String> = Vec::new();
    let mut on_ignored = |path: serde_ignored::Path| unknown.push(key_path(&path));
    let deserializer = serde_ignored::Deserializer::new(merged, &mut on_ignored);
    let result: Result<T, _> = serde_path_to_error::deserialize(deserializer);
    let raw = match result {
        Ok(raw) => Some(raw),
        Err(e) => {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            problems
                .list
                .push((key, structure_message(&e.inner().to_string())));
            None
        }
    };
    // Unknown keys first: they often explain the errors that follow.
    let unknown = unknown.into_iter().map(|k| {
        (
            k,
            "unknown key (check the spelling; see config/qosd.toml)".to_owned(),
        )
    });
    problems.list.splice(0..0, unknown);
    raw
}

fn to_errors(file: &str, problems: validate::Problems) -> Vec<ConfigError> {
    problems
        .list
        .into_iter()
        .map(|(key, message)| ConfigError {
            file: file.to_owned(),
            key,
            message,
        })
        .collect()
}

/// `category[2].min` from serde_ignored's path.
fn key_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        P::Map { parent, key } => {
            let p = key_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}

/// Rewords serde's structural errors for admins.
fn structure_message(msg: &str) -> String {
    // serde_path_to_error already gives the path; the config crate appends
    // "for key `...`" which only repeats it.
    let msg = msg.split(" for key `").next().unwrap_or(msg);
    if msg.contains("expected a sequence") {
        format!("{msg}: use [[double brackets]] for a list of tables")
    } else {
        msg.to_owned()
    }
}

fn syntax_message(e: &config::ConfigError) -> String {
    format!("not valid TOML: {e}")
}

#[cfg(test)]
mod tests;
