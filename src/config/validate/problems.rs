//! [`Problems`]: where every check of the file records what is wrong, and
//! the readers of raw values that record a problem instead of failing.

use std::str::FromStr;

use super::super::model::PerDirection;
use super::super::raw::Value;
use super::super::units::Direction;

/// Collects (key path, message) pairs.
#[derive(Default)]
pub(in crate::config) struct Problems {
    pub list: Vec<(String, String)>,
}

impl Problems {
    pub(super) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.list.push((key.into(), message.into()));
    }

    /// A scalar as text, or a problem if it is a list or table.
    pub(super) fn text(&mut self, key: &str, v: &Value) -> Option<String> {
        let t = v.as_text();
        if t.is_none() {
            self.add(key, format!("expected a single value, found {}", v.kind()));
        }
        t
    }

    /// A scalar parsed with `parse`; `None` (and a problem) when it fails.
    pub(super) fn parse<T>(
        &mut self,
        key: &str,
        v: &Value,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.text(key, v)?;
        match parse(&text) {
            Ok(t) => Some(t),
            Err(e) => {
                self.add(key, e);
                None
            }
        }
    }

    /// A required scalar parsed with `parse`.
    pub(super) fn required<T>(
        &mut self,
        key: &str,
        v: &Option<Value>,
        hint: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        match v {
            Some(v) => self.parse(key, v, parse),
            None => {
                self.add(key, format!("missing; {hint}"));
                None
            }
        }
    }

    /// An optional scalar parsed with `parse`, or `default`.
    pub(super) fn optional<T>(
        &mut self,
        key: &str,
        v: &Option<Value>,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        match v {
            Some(v) => self.parse(key, v, parse).unwrap_or(default),
            None => default,
        }
    }

    /// A list (or a single value, or a comma-separated string), each element
    /// parsed with `parse`; element problems are reported at `key[i]`.
    pub(super) fn list<T>(
        &mut self,
        key: &str,
        v: &Option<Value>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        let Some(v) = v else { return Vec::new() };
        let mut out = Vec::new();
        match v {
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(t) = self.parse(&format!("{key}[{i}]"), item, &parse) {
                        out.push(t);
                    }
                }
                if items.is_empty() {
                    self.add(key, "empty list; remove the key to match anything");
                }
            }
            Value::Table(_) => self.add(key, "expected a value or a list, found a table"),
            scalar => {
                let text = scalar.as_text().unwrap_or_default();
                for part in text.split(',') {
                    match parse(part.trim()) {
                        Ok(t) => out.push(t),
                        Err(e) => self.add(key, e),
                    }
                }
            }
        }
        out
    }

    /// A value for both directions or a `{ upload, download }` table.
    pub(super) fn per_direction<T: Copy>(
        &mut self,
        key: &str,
        v: &Option<Value>,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> PerDirection<T> {
        match v {
            None => PerDirection::both(default),
            Some(Value::Table(entries)) => {
                let mut out = PerDirection::both(default);
                for (k, val) in entries {
                    let sub = format!("{key}.{k}");
                    match Direction::from_str(k) {
                        Ok(dir) if k == dir.as_str() => {
                            if let Some(t) = self.parse(&sub, val, &parse) {
                                out.set(dir, t);
                            }
                        }
                        _ => self.add(sub, "unknown key (use \"upload\" or \"download\")"),
                    }
                }
                out
            }
            Some(v) => PerDirection::both(self.parse(key, v, parse).unwrap_or(default)),
        }
    }
}
