//! The configuration as written, before validation.
//!
//! Sections and arrays of tables are typed so that serde reports misplaced
//! structure with its key path, and `serde_ignored` reports unknown keys.
//! Every leaf is a [`Value`] that accepts anything, so that a wrong type or a
//! malformed rate is found by the validator, which reports all errors at once
//! instead of stopping at the first.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// Any value a TOML file (or an environment override) can hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A string (environment overrides always arrive as strings).
    Str(String),
    /// An array.
    List(Vec<Value>),
    /// A table, in file order.
    Table(Vec<(String, Value)>),
}

impl Value {
    /// What kind of value this is, for error messages ("a table", "a string").
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Bool(_) => "a boolean",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Table(_) => "a table",
        }
    }

    /// The value as text if it is a scalar: numbers are written out, so
    /// `weight = "10"` (from an environment variable) and `weight = 10` read
    /// the same.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Str(s) => Some(s.clone()),
            Value::List(_) | Value::Table(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v)
            .map(Value::Int)
            .unwrap_or(Value::Float(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Str(String::new()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Str(String::new()))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Value::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            entries.push((k, v));
        }
        Ok(Value::Table(entries))
    }
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub interfaces: RawInterfaces,
    pub link: RawLink,
    pub category: Vec<RawCategory>,
    pub default_category: Option<Value>,
    pub rule: Vec<RawRule>,
    pub classify: RawClassify,
    pub datapath: RawDatapath,
    pub daemon: RawDaemon,
    pub metrics: RawMetrics,
    pub api: RawApi,
    pub flows: RawFlows,
    pub shaper: RawShaper,
    pub autorate: RawAutorate,
}

/// `[interfaces]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawInterfaces {
    pub lan: Option<Value>,
    pub wan: Option<Value>,
}

/// `[link]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawLink {
    pub upload: Option<Value>,
    pub download: Option<Value>,
    pub overhead: Option<Value>,
    pub isp_queue_guard: Option<Value>,
    pub isp_queue_target: Option<Value>,
    pub window_clamp: Option<Value>,
}

/// One `[[category]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawCategory {
    pub name: Option<Value>,
    pub priority: Option<Value>,
    pub weight: Option<Value>,
    pub min: Option<Value>,
    pub max: Option<Value>,
    pub dscp: Option<Value>,
    pub codel_target: Option<Value>,
    pub codel_interval: Option<Value>,
    pub ecn: Option<Value>,
    pub description: Option<Value>,
}

/// One `[[rule]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRule {
    pub name: Option<Value>,
    pub category: Option<Value>,
    pub protocol: Option<Value>,
    pub ports: Option<Value>,
    pub src_ports: Option<Value>,
    pub dst_ports: Option<Value>,
    pub cidrs: Option<Value>,
    pub src_cidrs: Option<Value>,
    pub dst_cidrs: Option<Value>,
    pub dscp: Option<Value>,
    pub vlan: Option<Value>,
    pub hosts: Option<Value>,
    pub apps: Option<Value>,
    pub direction: Option<Value>,
    pub payload_prefix: Option<Value>,
    pub payload_len: Option<Value>,
    pub http_method: Option<Value>,
    pub http_path_suffix: Option<Value>,
    pub http_user_agent: Option<Value>,
    pub http_content_type: Option<Value>,
}

impl RawRule {
    /// The rule's conditions. (Not `#[serde(flatten)]`: flattening hides
    /// unknown keys from `serde_ignored`.)
    pub fn when(&self) -> RawMatch {
        RawMatch {
            protocol: self.protocol.clone(),
            ports: self.ports.clone(),
            src_ports: self.src_ports.clone(),
            dst_ports: self.dst_ports.clone(),
            cidrs: self.cidrs.clone(),
            src_cidrs: self.src_cidrs.clone(),
            dst_cidrs: self.dst_cidrs.clone(),
            dscp: self.dscp.clone(),
            vlan: self.vlan.clone(),
            hosts: self.hosts.clone(),
            apps: self.apps.clone(),
            direction: self.direction.clone(),
            payload_prefix: self.payload_prefix.clone(),
            payload_len: self.payload_len.clone(),
            http_method: self.http_method.clone(),
            http_path_suffix: self.http_path_suffix.clone(),
            http_user_agent: self.http_user_agent.clone(),
            http_content_type: self.http_content_type.clone(),
        }
    }
}

/// Conditions of a rule or of a catalog signature.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawMatch {
    pub protocol: Option<Value>,
    pub ports: Option<Value>,
    pub src_ports: Option<Value>,
    pub dst_ports: Option<Value>,
    pub cidrs: Option<Value>,
    pub src_cidrs: Option<Value>,
    pub dst_cidrs: Option<Value>,
    pub dscp: Option<Value>,
    pub vlan: Option<Value>,
    pub hosts: Option<Value>,
    pub apps: Option<Value>,
    pub direction: Option<Value>,
    pub payload_prefix: Option<Value>,
    pub payload_len: Option<Value>,
    pub http_method: Option<Value>,
    pub http_path_suffix: Option<Value>,
    pub http_user_agent: Option<Value>,
    pub http_content_type: Option<Value>,
}

/// `[daemon]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawDaemon {
    pub bypass_bridge: Option<Value>,
    pub user: Option<Value>,
    pub reopen_timeout: Option<Value>,
}

/// `[datapath]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawDatapath {
    pub backend: Option<Value>,
    pub manage_offloads: Option<Value>,
    pub max_frame: Option<Value>,
    pub socket_buffer: Option<Value>,
    pub threads: Option<Value>,
}

/// `[classify]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawClassify {
    pub trust_dscp: Option<Value>,
    pub apps_file: Option<Value>,
    pub inspect_packets: Option<Value>,
    pub bulk_after_bytes: Option<Value>,
    pub ack_category: Option<Value>,
    pub dpi_memory: Option<Value>,
}

/// An app catalog file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawCatalog {
    pub app: Vec<RawApp>,
}

/// One `[[app]]` of the catalog.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawApp {
    pub name: Option<Value>,
    pub category: Option<Value>,
    pub description: Option<Value>,
    pub hosts: Option<Value>,
    #[serde(rename = "match")]
    pub matches: Vec<RawMatch>,
}

/// `[metrics]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawMetrics {
    pub listen: Option<Value>,
    pub top_hosts: Option<Value>,
}

/// `[api]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawApi {
    pub listen: Option<Value>,
    pub token_file: Option<Value>,
}

/// `[flows]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawFlows {
    pub max_flows: Option<Value>,
    pub tcp_idle_timeout: Option<Value>,
    pub udp_idle_timeout: Option<Value>,
    pub tcp_closed_timeout: Option<Value>,
}

/// `[shaper]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawShaper {
    pub fairness: Option<Value>,
    pub host_max: Option<Value>,
}

/// `[autorate]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAutorate {
    pub enabled: Option<Value>,
    pub upload_min: Option<Value>,
    pub upload_max: Option<Value>,
    pub download_min: Option<Value>,
    pub download_max: Option<Value>,
    pub delay_threshold: Option<Value>,
}
