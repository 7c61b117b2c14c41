//! Turns a [`RawConfig`] into a [`Config`], collecting every problem with its
//! key path instead of stopping at the first.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use super::model::{
    Api, App, Backend, Catalog, Category, CategoryId, Classify, Config, Daemon, Datapath, Flows,
    Interfaces, Link, MAX_CATEGORIES, Match, Metrics, PerDirection, Rule,
};
use super::raw::{RawCatalog, RawCategory, RawConfig, RawMatch, RawRule, Value};
use super::units::{
    Bandwidth, ByteSize, Direction, Dscp, HostPattern, PortRange, Protocol, Rate, parse_duration,
};

/// Default of `classify.dpi_memory`: room for the partial state of about
/// ten thousand flows at once (a ClientHello split over two segments holds
/// ~2 KiB while it waits), a few hundred KiB of it in a quiet office.
pub const DEFAULT_DPI_MEMORY: u64 = 32 << 20;

/// Most `classify.dpi_memory` accepts: more would only let a flood grow
/// qosd further.
pub const MAX_DPI_MEMORY: u64 = 4 << 30;

/// Default address of the Prometheus endpoint.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9477";
/// Default address of the admin API.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:9478";

/// Collects (key path, message) pairs.
#[derive(Default)]
pub(super) struct Problems {
    pub list: Vec<(String, String)>,
}

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.list.push((key.into(), message.into()));
    }

    /// A scalar as text, or a problem if it is a list or table.
    fn text(&mut self, key: &str, v: &Value) -> Option<String> {
        let t = v.as_text();
        if t.is_none() {
            self.add(key, format!("expected a single value, found {}", v.kind()));
        }
        t
    }

    /// A scalar parsed with `parse`; `None` (and a problem) when it fails.
    fn parse<T>(
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
    fn required<T>(
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
    fn optional<T>(
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
    fn list<T>(
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
    fn per_direction<T: Copy>(
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

fn int_in_range(min: i64, max: i64, what: &'static str) -> impl Fn(&str) -> Result<i64, String> {
    move |s: &str| {
        let t = s.trim();
        let n: i64 = match t.parse() {
            Ok(n) => n,
            Err(_) => match t.parse::<f64>() {
                Ok(f) if f.fract() == 0.0 && f.abs() < 1e18 => f as i64,
                _ => {
                    return Err(format!(
                        "\"{s}\" is not a whole number; {what} must be between {min} and {max}"
                    ));
                }
            },
        };
        if n < min || n > max {
            return Err(format!("{what} {n} is out of range ({min}-{max})"));
        }
        Ok(n)
    }
}

/// An amount of memory between `min` and `max` bytes.
fn size_in_range(
    min: u64,
    max: u64,
    what: &'static str,
) -> impl Fn(&str) -> Result<ByteSize, String> {
    move |s: &str| {
        let size: ByteSize = s.parse()?;
        if size.bytes() < min || size.bytes() > max {
            return Err(format!(
                "{what} {size} is out of range ({}-{})",
                ByteSize::from_bytes(min),
                ByteSize::from_bytes(max)
            ));
        }
        Ok(size)
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("\"{s}\" is not true or false")),
    }
}

fn parse_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && s.as_bytes().first().is_some_and(u8::is_ascii_lowercase);
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "invalid name \"{s}\": use 1-32 lower-case letters, digits, '-' or '_', starting with a letter (it appears in metrics and URLs)"
        ))
    }
}

fn parse_interface(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b.is_ascii_control());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "\"{s}\" is not a valid interface name (1-15 characters, no '/', ':' or spaces)"
        ))
    }
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        format!(
            "\"{s}\" is not an address and port (write e.g. \"127.0.0.1:9477\" or \"[::1]:9477\")"
        )
    })
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    let net = match IpNet::from_str(t) {
        Ok(net) => net,
        Err(_) => match IpAddr::from_str(t) {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                return Err(format!(
                    "\"{s}\" is not a valid CIDR (write e.g. \"10.0.0.0/8\", \"2001:db8::/32\" or a single address)"
                ));
            }
        },
    };
    if net.trunc() != net {
        return Err(format!(
            "\"{s}\" has host bits set below its /{} prefix; did you mean \"{}\"?",
            net.prefix_len(),
            net.trunc()
        ));
    }
    Ok(net)
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(7 * 86_400) {
        return Err(format!("timeout \"{s}\" must be between 1s and 7 days"));
    }
    Ok(d)
}

fn parse_vlan(s: &str) -> Result<u16, String> {
    int_in_range(1, 4094, "VLAN id")(s).map(|n| n as u16)
}

fn parse_min(s: &str) -> Result<Bandwidth, String> {
    Bandwidth::parse(s, true)
}

fn parse_max(s: &str) -> Result<Bandwidth, String> {
    Bandwidth::parse(s, false)
}

/// Validates `raw`, read from `file`. Relative paths in it are resolved
/// against the file's directory.
pub(super) fn validate(raw: &RawConfig, file: &str, problems: &mut Problems) -> Option<Config> {
    let p = problems;
    let base_dir = Path::new(file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();

    // [interfaces]
    let lan = p.optional(
        "interfaces.lan",
        &raw.interfaces.lan,
        "lan0".to_owned(),
        parse_interface,
    );
    let wan = p.optional(
        "interfaces.wan",
        &raw.interfaces.wan,
        "wan0".to_owned(),
        parse_interface,
    );
    if lan == wan {
        p.add(
            "interfaces.wan",
            format!("the LAN and WAN interfaces are both \"{lan}\"; they must differ"),
        );
    }

    // [link]
    let hint = "set the measured line rate minus 5-10%, e.g. \"20 Mbit\"";
    let upload = p.required("link.upload", &raw.link.upload, hint, parse_link_rate);
    let download = p.required("link.download", &raw.link.download, hint, parse_link_rate);
    let overhead = p.per_direction("link.overhead", &raw.link.overhead, 0, |s| {
        int_in_range(-64, 256, "overhead")(s).map(|n| n as i32)
    });

    // [[category]]
    let mut categories: Vec<Category> = Vec::new();
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    if raw.category.is_empty() {
        p.add(
            "category",
            "no categories defined; at least one [[category]] is required",
        );
    }
    if raw.category.len() > MAX_CATEGORIES {
        p.add(
            "category",
            format!(
                "{} categories defined; at most {MAX_CATEGORIES} are allowed",
                raw.category.len()
            ),
        );
    }
    // Category positions in `categories` may differ from file positions when
    // a category is too broken to keep; remember the file index for messages.
    let mut file_index: Vec<usize> = Vec::new();
    for (i, rc) in raw.category.iter().enumerate() {
        let key = format!("category[{i}]");
        if let Some(cat) = validate_category(rc, &key, p) {
            if let Some(first) = first_seen.get(&cat.name) {
                p.add(
                    format!("{key}.name"),
                    format!(
                        "duplicate category name \"{}\" (first defined at category[{first}])",
                        cat.name
                    ),
                );
                continue;
            }
            first_seen.insert(cat.name.clone(), i);
            categories.push(cat);
            file_index.push(i);
        }
    }
    let known = || {
        categories
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let lookup = |name: &str| {
        categories
            .iter()
            .position(|c| c.name == name)
            .map(|i| CategoryId(i as u8))
    };

    // min above max can be seen without the link rate when both are written
    // the same way; with the link rate, the check below covers every case.
    if upload.is_none() || download.is_none() {
        for (cat, &i) in categories.iter().zip(&file_index) {
            for dir in Direction::BOTH {
                let above = match (cat.min.get(dir), cat.max.get(dir)) {
                    (Bandwidth::Percent(a), Bandwidth::Percent(b)) => a > b,
                    (Bandwidth::Absolute(a), Bandwidth::Absolute(b)) => a > b,
                    _ => false,
                };
                if above {
                    p.add(
                        format!("category[{i}].min"),
                        format!(
                            "{}: min ({}) is above max ({}) for {dir}",
                            cat.name,
                            cat.min.get(dir),
                            cat.max.get(dir)
                        ),
                    );
                    break;
                }
            }
        }
    }
    // Rates against the link.
    if let (Some(up), Some(down)) = (upload, download) {
        let link = Link {
            upload: up,
            download: down,
            overhead,
        };
        for dir in Direction::BOTH {
            let link_rate = link.rate(dir);
            let mut sum: u128 = 0;
            for (cat, &i) in categories.iter().zip(&file_index) {
                let min = cat.min.get(dir);
                let max = cat.max.get(dir);
                if let Bandwidth::Absolute(r) = min
                    && r > link_rate
                {
                    p.add(
                        format!("category[{i}].min"),
                        format!(
                            "{} min {r} is above the {dir} link rate ({link_rate})",
                            cat.name
                        ),
                    );
                }
                let (min_r, max_r) = (min.resolve(link_rate), max.resolve(link_rate));
                if min_r > max_r {
                    p.add(
                        format!("category[{i}].min"),
                        format!(
                            "{}: min ({min} = {min_r}) is above max ({max} = {max_r}) for {dir}",
                            cat.name
                        ),
                    );
                }
                sum += u128::from(min_r.bps());
            }
            if sum > u128::from(link_rate.bps()) {
                let pct = sum as f64 * 100.0 / link_rate.bps() as f64;
                let parts: Vec<String> = categories
                    .iter()
                    .filter(|c| !c.min.get(dir).is_zero())
                    .map(|c| format!("{} {}", c.name, c.min.get(dir)))
                    .collect();
                p.add(
                    "category",
                    format!(
                        "the min guarantees add up to {pct:.0}% of the {dir} link ({link_rate}): {}; they must not exceed 100%",
                        parts.join(", ")
                    ),
                );
            }
        }
    }

    // default_category
    let default_category = match &raw.default_category {
        None => {
            p.add(
                "default_category",
                "missing; name the category for traffic nothing else claims",
            );
            None
        }
        Some(v) => p.text("default_category", v).and_then(|name| {
            if lookup(&name).is_none() && !categories.is_empty() {
                p.add(
                    "default_category",
                    format!("unknown category \"{name}\" (known: {})", known()),
                );
                None
            } else {
                Some(name)
            }
        }),
    };

    // [[rule]]
    let mut rules = Vec::new();
    let mut rule_names: HashMap<String, usize> = HashMap::new();
    for (i, rr) in raw.rule.iter().enumerate() {
        let key = format!("rule[{i}]");
        if let Some(rule) = validate_rule(rr, &key, i, p, &lookup, &known) {
            if let Some(first) = rule_names.get(&rule.name) {
                p.add(
                    format!("{key}.name"),
                    format!(
                        "duplicate rule name \"{}\" (first used at rule[{first}])",
                        rule.name
                    ),
                );
                continue;
            }
            rule_names.insert(rule.name.clone(), i);
            rules.push(rule);
        }
    }

    // [classify]
    let ack_category = match &raw.classify.ack_category {
        None => categories
            .iter()
            .any(|c| c.name == "control")
            .then(|| "control".to_owned()),
        Some(v) => p.text("classify.ack_category", v).and_then(|name| {
            if name.is_empty() || name == "none" {
                None
            } else if lookup(&name).is_none() && !categories.is_empty() {
                p.add(
                    "classify.ack_category",
                    format!(
                        "unknown category \"{name}\" (known: {}; or \"none\")",
                        known()
                    ),
                );
                None
            } else {
                Some(name)
            }
        }),
    };
    let classify = Classify {
        ack_category,
        trust_dscp: p.optional(
            "classify.trust_dscp",
            &raw.classify.trust_dscp,
            false,
            parse_bool,
        ),
        apps_file: raw
            .classify
            .apps_file
            .as_ref()
            .and_then(|v| p.parse("classify.apps_file", v, |s| relative_path(s, &base_dir))),
        inspect_packets: p.optional(
            "classify.inspect_packets",
            &raw.classify.inspect_packets,
            24,
            |s| int_in_range(1, 100, "inspect_packets")(s).map(|n| n as u16),
        ),
        bulk_after_bytes: p.optional(
            "classify.bulk_after_bytes",
            &raw.classify.bulk_after_bytes,
            50_000_000,
            |s| int_in_range(0, i64::MAX, "bulk_after_bytes")(s).map(|n| n as u64),
        ),
        dpi_memory: p.optional(
            "classify.dpi_memory",
            &raw.classify.dpi_memory,
            ByteSize::from_bytes(DEFAULT_DPI_MEMORY),
            size_in_range(0, MAX_DPI_MEMORY, "dpi_memory"),
        ),
    };

    // [datapath]
    let datapath = Datapath {
        backend: p.optional(
            "datapath.backend",
            &raw.datapath.backend,
            Backend::Ring,
            |s| match s.trim().to_ascii_lowercase().as_str() {
                "pnet" => Ok(Backend::Pnet),
                "ring" => Ok(Backend::Ring),
                _ => Err(format!(
                    "unknown backend \"{s}\" (use \"pnet\" or \"ring\")"
                )),
            },
        ),
        manage_offloads: p.optional(
            "datapath.manage_offloads",
            &raw.datapath.manage_offloads,
            true,
            parse_bool,
        ),
        max_frame: raw.datapath.max_frame.as_ref().and_then(|v| {
            p.parse("datapath.max_frame", v, |s| {
                int_in_range(128, 65_535, "max_frame")(s).map(|n| n as u32)
            })
        }),
        socket_buffer: p.optional(
            "datapath.socket_buffer",
            &raw.datapath.socket_buffer,
            4 << 20,
            |s| int_in_range(65_536, 1 << 30, "socket_buffer")(s).map(|n| n as u32),
        ),
    };

    // [daemon]
    let daemon = Daemon {
        reopen_timeout: p.optional(
            "daemon.reopen_timeout",
            &raw.daemon.reopen_timeout,
            Duration::from_secs(10),
            parse_timeout,
        ),
        bypass_bridge: p.optional(
            "daemon.bypass_bridge",
            &raw.daemon.bypass_bridge,
            "qosd-bypass".to_owned(),
            |s| {
                if s.is_empty() {
                    Ok(String::new())
                } else {
                    parse_interface(s)
                }
            },
        ),
        user: raw.daemon.user.as_ref().and_then(|v| {
            p.parse("daemon.user", v, |s| {
                let ok = !s.is_empty()
                    && s.len() <= 32
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
                if ok {
                    Ok(s.to_owned())
                } else {
                    Err(format!("\"{s}\" is not a user name"))
                }
            })
        }),
    };
    if !daemon.bypass_bridge.is_empty()
        && (daemon.bypass_bridge == lan || daemon.bypass_bridge == wan)
    {
        p.add(
            "daemon.bypass_bridge",
            "must not be one of the two interfaces",
        );
    }

    // [metrics], [api]
    let metrics_listen = p.optional(
        "metrics.listen",
        &raw.metrics.listen,
        default_addr(DEFAULT_METRICS_LISTEN),
        parse_listen,
    );
    let api_listen = p.optional(
        "api.listen",
        &raw.api.listen,
        default_addr(DEFAULT_API_LISTEN),
        parse_listen,
    );
    let token_file = raw
        .api
        .token_file
        .as_ref()
        .and_then(|v| p.parse("api.token_file", v, |s| relative_path(s, &base_dir)));

    // [flows]
    let max_flows = p.optional("flows.max_flows", &raw.flows.max_flows, 65_536, |s| {
        int_in_range(16, 16_777_216, "max_flows")(s).map(|n| n as u32)
    });
    let tcp_idle = Duration::from_secs(600);
    let udp_idle = Duration::from_secs(60);
    let closed = Duration::from_secs(10);
    let flows = Flows {
        max_flows,
        tcp_idle_timeout: p.optional(
            "flows.tcp_idle_timeout",
            &raw.flows.tcp_idle_timeout,
            tcp_idle,
            parse_timeout,
        ),
        udp_idle_timeout: p.optional(
            "flows.udp_idle_timeout",
            &raw.flows.udp_idle_timeout,
            udp_idle,
            parse_timeout,
        ),
        tcp_closed_timeout: p.optional(
            "flows.tcp_closed_timeout",
            &raw.flows.tcp_closed_timeout,
            closed,
            parse_timeout,
        ),
    };

    let (Some(upload), Some(download), Some(default_category)) =
        (upload, download, default_category)
    else {
        return None;
    };
    if !p.list.is_empty() {
        return None;
    }
    Some(Config {
        default_category,
        interfaces: Interfaces { lan, wan },
        link: Link {
            upload,
            download,
            overhead,
        },
        category: categories,
        rule: rules,
        classify,
        datapath,
        daemon,
        metrics: Metrics {
            listen: metrics_listen,
        },
        api: Api {
            listen: api_listen,
            token_file,
        },
        flows,
        source: file.to_owned(),
        catalog: Default::default(),
    })
}

/// A path from the file, relative ones resolved against the file's directory.
fn relative_path(s: &str, base_dir: &Path) -> Result<PathBuf, String> {
    if s.trim().is_empty() {
        return Err("empty path".to_string());
    }
    let path = PathBuf::from(s);
    Ok(if path.is_absolute() {
        path
    } else {
        base_dir.join(path)
    })
}

fn default_addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// The slowest link qosd will shape (1 kbyte/s).
const MIN_LINK_BPS: u64 = 8_000;

fn parse_link_rate(s: &str) -> Result<Rate, String> {
    let r = Rate::from_str(s)?;
    if r.bps() < MIN_LINK_BPS {
        return Err(format!("link rate {r} is below the minimum of 8 kbit"));
    }
    Ok(r)
}

fn validate_category(rc: &RawCategory, key: &str, p: &mut Problems) -> Option<Category> {
    let name = p.required(
        &format!("{key}.name"),
        &rc.name,
        "every category needs a name",
        parse_name,
    );
    let priority = p.optional(&format!("{key}.priority"), &rc.priority, 4, |s| {
        int_in_range(0, 7, "priority")(s).map(|n| n as u8)
    });
    let weight = p.optional(&format!("{key}.weight"), &rc.weight, 10, |s| {
        int_in_range(1, 1000, "weight")(s).map(|n| n as u32)
    });
    let min = p.per_direction(&format!("{key}.min"), &rc.min, Bandwidth::NONE, parse_min);
    let max = p.per_direction(&format!("{key}.max"), &rc.max, Bandwidth::FULL, parse_max);
    let dscp = rc
        .dscp
        .as_ref()
        .and_then(|v| p.parse(&format!("{key}.dscp"), v, Dscp::from_str));
    let target = p.optional(
        &format!("{key}.codel_target"),
        &rc.codel_target,
        Duration::from_millis(5),
        parse_duration,
    );
    let interval = p.optional(
        &format!("{key}.codel_interval"),
        &rc.codel_interval,
        Duration::from_millis(100),
        parse_duration,
    );
    if target < Duration::from_micros(100) || target > Duration::from_secs(1) {
        p.add(
            format!("{key}.codel_target"),
            "codel_target must be between 100us and 1s",
        );
    } else if interval <= target || interval > Duration::from_secs(10) {
        p.add(
            format!("{key}.codel_interval"),
            "codel_interval must be above codel_target and at most 10s",
        );
    }
    let ecn = p.optional(&format!("{key}.ecn"), &rc.ecn, true, parse_bool);
    let description = rc
        .description
        .as_ref()
        .and_then(|v| p.text(&format!("{key}.description"), v));
    Some(Category {
        name: name?,
        description,
        priority,
        weight,
        min,
        max,
        dscp,
        codel_target: target,
        codel_interval: interval,
        ecn,
    })
}

fn validate_rule(
    rr: &RawRule,
    key: &str,
    index: usize,
    p: &mut Problems,
    lookup: &dyn Fn(&str) -> Option<CategoryId>,
    known: &dyn Fn() -> String,
) -> Option<Rule> {
    let name = match &rr.name {
        Some(v) => p.parse(&format!("{key}.name"), v, parse_name),
        None => Some(format!("rule{index}")),
    };
    let category = p.required(
        &format!("{key}.category"),
        &rr.category,
        "name the category this rule assigns",
        |s| Ok(s.to_owned()),
    );
    let category_id = category.as_deref().and_then(|c| {
        let id = lookup(c);
        if id.is_none() {
            p.add(
                format!("{key}.category"),
                format!("unknown category \"{c}\" (known: {})", known()),
            );
        }
        id
    });
    let when = validate_match(&rr.when(), key, p, MatchScope::Rule);
    Some(Rule {
        name: name?,
        category: category?,
        category_id: category_id?,
        when,
    })
}

/// Where a set of conditions appears: catalog signatures take only the
/// conditions that identify an application on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum MatchScope {
    /// A `[[rule]]`: every condition.
    Rule,
    /// An `[[app.match]]`.
    Signature,
}

/// Validates a rule's or signature's conditions.
pub(super) fn validate_match(
    rm: &RawMatch,
    key: &str,
    p: &mut Problems,
    scope: MatchScope,
) -> Match {
    if scope == MatchScope::Signature {
        for (name, v) in [
            ("dscp", &rm.dscp),
            ("vlan", &rm.vlan),
            ("hosts", &rm.hosts),
            ("apps", &rm.apps),
            ("direction", &rm.direction),
        ] {
            if v.is_some() {
                p.add(format!("{key}.{name}"), "not allowed in an app signature (use it in a [[rule]]; hosts go on the [[app]] itself)");
            }
        }
    }
    let protocol = rm
        .protocol
        .as_ref()
        .and_then(|v| {
            p.parse(&format!("{key}.protocol"), v, |s| {
                if s.eq_ignore_ascii_case("any") {
                    Ok(None)
                } else {
                    Protocol::from_str(s).map(Some)
                }
            })
        })
        .flatten();
    let ports = p.list(&format!("{key}.ports"), &rm.ports, PortRange::from_str);
    let src_ports = p.list(
        &format!("{key}.src_ports"),
        &rm.src_ports,
        PortRange::from_str,
    );
    let dst_ports = p.list(
        &format!("{key}.dst_ports"),
        &rm.dst_ports,
        PortRange::from_str,
    );
    if let Some(proto) = protocol
        && !matches!(proto, Protocol::TCP | Protocol::UDP | Protocol(132))
        && !(ports.is_empty() && src_ports.is_empty() && dst_ports.is_empty())
    {
        p.add(
            format!("{key}.protocol"),
            format!("ports only exist for tcp, udp and sctp, not {proto}"),
        );
    }
    let direction = rm
        .direction
        .as_ref()
        .and_then(|v| {
            p.parse(&format!("{key}.direction"), v, |s| {
                if s.eq_ignore_ascii_case("both") || s.eq_ignore_ascii_case("any") {
                    Ok(None)
                } else {
                    Direction::from_str(s).map(Some)
                }
            })
        })
        .flatten();
    let payload_prefix = rm.payload_prefix.as_ref().and_then(|v| {
        p.parse(&format!("{key}.payload_prefix"), v, |s| {
            let bytes: Option<Vec<u8>> =
                s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect();
            match bytes {
                None => {
                    Err("payload_prefix takes bytes: characters up to \\u00ff only".to_string())
                }
                Some(b) if b.is_empty() || b.len() > 64 => {
                    Err("payload_prefix must be 1-64 bytes".to_string())
                }
                Some(b) => Ok(b),
            }
        })
    });
    Match {
        protocol,
        ports,
        src_ports,
        dst_ports,
        cidrs: p.list(&format!("{key}.cidrs"), &rm.cidrs, parse_cidr),
        src_cidrs: p.list(&format!("{key}.src_cidrs"), &rm.src_cidrs, parse_cidr),
        dst_cidrs: p.list(&format!("{key}.dst_cidrs"), &rm.dst_cidrs, parse_cidr),
        dscp: p.list(&format!("{key}.dscp"), &rm.dscp, Dscp::from_str),
        vlan: p.list(&format!("{key}.vlan"), &rm.vlan, parse_vlan),
        hosts: p.list(&format!("{key}.hosts"), &rm.hosts, HostPattern::from_str),
        apps: p.list(&format!("{key}.apps"), &rm.apps, parse_name),
        direction,
        payload_prefix,
    }
}

/// Validates an app catalog read from `file`.
pub(super) fn validate_catalog(raw: &RawCatalog, p: &mut Problems) -> Catalog {
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
