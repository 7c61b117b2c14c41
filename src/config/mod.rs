//! Configuration: the TOML model, loading (file or embedded default, plus
//! `QOSD_`-prefixed environment overrides) and whole-file validation.
//!
//! Loading never stops at the first problem: every error carries the file,
//! the key path (`category[2].min`) and what is wrong, and all are returned
//! together. The running daemon only ever sees a [`Config`] that passed.

mod model;
mod raw;
pub mod units;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

pub use model::{
    Api, Category, CategoryId, Config, Flows, Interfaces, Link, MAX_CATEGORIES, Metrics,
    PerDirection, Rule,
};
pub use units::{Bandwidth, Direction, Dscp, HostPattern, PortRange, Protocol, Rate};
pub use validate::{DEFAULT_API_LISTEN, DEFAULT_METRICS_LISTEN};

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
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::single(&name, "", format!("cannot read the file: {e}")))?;
    load_str(&name, &text, &Env::Process)
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
    let merged = builder
        .build()
        .map_err(|e| ConfigErrors::single(name, "", syntax_message(&e)))?;

    let mut unknown: Vec<String> = Vec::new();
    let mut on_ignored = |path: serde_ignored::Path| unknown.push(key_path(&path));
    let deserializer = serde_ignored::Deserializer::new(merged, &mut on_ignored);
    let raw: Result<raw::RawConfig, _> = serde_path_to_error::deserialize(deserializer);

    let mut problems = validate::Problems::default();
    let raw = match raw {
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
    let mut errors: Vec<(String, String)> = unknown
        .into_iter()
        .map(|k| {
            (
                k,
                "unknown key (check the spelling; see config/qosd.toml)".to_owned(),
            )
        })
        .collect();
    let config = raw.and_then(|raw| validate::validate(&raw, name, &mut problems));
    errors.extend(problems.list);
    if errors.is_empty()
        && let Some(config) = config
    {
        return Ok(config);
    }
    Err(ConfigErrors(
        errors
            .into_iter()
            .map(|(key, message)| ConfigError {
                file: name.to_owned(),
                key,
                message,
            })
            .collect(),
    ))
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
