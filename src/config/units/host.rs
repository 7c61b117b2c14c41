//! Host-name patterns ("*.sharepoint.com"), matched against SNI, HTTP
//! Host and names learned from DNS.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A host-name pattern: an exact name ("erp.example.com") or every name under
/// a domain ("*.sharepoint.com", which does not match "sharepoint.com" itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPattern {
    /// Lower-case name, without the "*." prefix.
    name: String,
    /// True for a "*." pattern.
    wildcard: bool,
}

impl HostPattern {
    /// True when `host` (any case, with or without a trailing dot) matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        if self.wildcard {
            let n = self.name.len();
            host.len() > n + 1
                && host.as_bytes().get(host.len() - n - 1) == Some(&b'.')
                && host
                    .get(host.len() - n..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(&self.name))
        } else {
            host.eq_ignore_ascii_case(&self.name)
        }
    }
    /// The name part, lower case, without "*.".
    pub fn name(&self) -> &str {
        &self.name
    }
    /// True for a "*." pattern.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }
}

impl FromStr for HostPattern {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let s = text.trim().trim_end_matches('.');
        let (wildcard, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if name.is_empty() {
            return Err(format!("host pattern \"{text}\" is empty"));
        }
        if name.len() > 253 {
            return Err(format!(
                "host pattern \"{text}\" is longer than a DNS name can be"
            ));
        }
        if name.contains('*') {
            return Err(format!(
                "host pattern \"{text}\": '*' is only allowed as a whole first label (\"*.example.com\")"
            ));
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!(
                    "host pattern \"{text}\" has an empty or over-long label"
                ));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "host pattern \"{text}\" contains characters not allowed in host names"
                ));
            }
        }
        Ok(HostPattern {
            name: name.to_ascii_lowercase(),
            wildcard,
        })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            write!(f, "*.{}", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

impl Serialize for HostPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
