//! Parsers for the scalar values that several sections share (whole
//! numbers in a range, booleans, names, interfaces, addresses, CIDRs,
//! timeouts, paths), each returning a message meant for an admin.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use super::super::units::{Bandwidth, ByteSize, parse_duration};

pub(super) fn int_in_range(
    min: i64,
    max: i64,
    what: &'static str,
) -> impl Fn(&str) -> Result<i64, String> {
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
pub(super) fn size_in_range(
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

pub(super) fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("\"{s}\" is not true or false")),
    }
}

pub(super) fn parse_name(s: &str) -> Result<String, String> {
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

pub(super) fn parse_interface(s: &str) -> Result<String, String> {
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

pub(super) fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        format!(
            "\"{s}\" is not an address and port (write e.g. \"127.0.0.1:9477\" or \"[::1]:9477\")"
        )
    })
}

pub(super) fn parse_cidr(s: &str) -> Result<IpNet, String> {
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

pub(super) fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(7 * 86_400) {
        return Err(format!("timeout \"{s}\" must be between 1s and 7 days"));
    }
    Ok(d)
}

pub(super) fn parse_vlan(s: &str) -> Result<u16, String> {
    int_in_range(1, 4094, "VLAN id")(s).map(|n| n as u16)
}

pub(super) fn parse_min(s: &str) -> Result<Bandwidth, String> {
    Bandwidth::parse(s, true)
}

pub(super) fn parse_max(s: &str) -> Result<Bandwidth, String> {
    Bandwidth::parse(s, false)
}

/// A path from the file, relative ones resolved against the file's directory.
pub(super) fn relative_path(s: &str, base_dir: &Path) -> Result<PathBuf, String> {
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

pub(super) fn default_addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}
