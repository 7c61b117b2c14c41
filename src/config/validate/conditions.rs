//! The conditions of a `[[rule]]` or an `[[app.match]]` signature:
//! protocol, ports, addresses, DSCP, VLAN, hosts, apps, direction,
//! payload prefix and lengths, and what a plain-HTTP exchange says
//! (method, path, User-Agent, Content-Type).

use std::str::FromStr;

use super::super::model::Match;
use super::super::raw::RawMatch;
use super::super::units::{
    Direction, Dscp, HostPattern, PortRange, Protocol, parse_http_content_type, parse_http_method,
    parse_http_path_suffix, parse_http_user_agent,
};
use super::Problems;
use super::values::{parse_cidr, parse_name, parse_vlan};

/// Where a set of conditions appears: catalog signatures take only the
/// conditions that identify an application on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum MatchScope {
    /// A `[[rule]]`: every condition but the payload's.
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
    if scope == MatchScope::Rule {
        // A rule is evaluated on every packet's headers; payloads are the
        // catalog's (which inspects each side's first one, and a plain-HTTP
        // flow's first request and response).
        for (name, v) in [
            ("payload_prefix", &rm.payload_prefix),
            ("payload_len", &rm.payload_len),
            ("http_method", &rm.http_method),
            ("http_path_suffix", &rm.http_path_suffix),
            ("http_user_agent", &rm.http_user_agent),
            ("http_content_type", &rm.http_content_type),
        ] {
            if v.is_some() {
                p.add(
                    format!("{key}.{name}"),
                    "not allowed in a [[rule]] (rules see headers only): define an [[app]] with this signature in an apps file and name it in the rule's apps",
                );
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
    let payload_len = p.list(&format!("{key}.payload_len"), &rm.payload_len, parse_len);
    if scope == MatchScope::Signature && rm.payload_len.is_some() && rm.payload_prefix.is_none() {
        p.add(
            format!("{key}.payload_len"),
            "payload_len applies to the payload a payload_prefix matched: add one".to_string(),
        );
    }
    let http_method = p.list(
        &format!("{key}.http_method"),
        &rm.http_method,
        parse_http_method,
    );
    let http_path_suffix = p.list(
        &format!("{key}.http_path_suffix"),
        &rm.http_path_suffix,
        parse_http_path_suffix,
    );
    let http_user_agent = p.list(
        &format!("{key}.http_user_agent"),
        &rm.http_user_agent,
        parse_http_user_agent,
    );
    let http_content_type = p.list(
        &format!("{key}.http_content_type"),
        &rm.http_content_type,
        parse_http_content_type,
    );
    if scope == MatchScope::Signature {
        check_http_signature(rm, key, protocol, p);
    }
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
        payload_len,
        http_method,
        http_path_suffix,
        http_user_agent,
        http_content_type,
    }
}

/// The HTTP conditions of a signature must be able to hold together: on a
/// TCP flow, without a payload prefix (the first payload of an HTTP flow
/// is its request line, which the HTTP conditions read better), and the
/// response's Content-Type apart from what the request says (the request
/// is not kept until the response comes: write two blocks).
fn check_http_signature(rm: &RawMatch, key: &str, protocol: Option<Protocol>, p: &mut Problems) {
    let request =
        rm.http_method.is_some() || rm.http_path_suffix.is_some() || rm.http_user_agent.is_some();
    let response = rm.http_content_type.is_some();
    if !(request || response) {
        return;
    }
    if protocol.is_some_and(|proto| proto != Protocol::TCP) {
        p.add(
            format!("{key}.protocol"),
            "http_* conditions read plain HTTP/1.x, which runs over TCP: write protocol = \"tcp\" or leave it out",
        );
    }
    if rm.payload_prefix.is_some() {
        p.add(
            format!("{key}.payload_prefix"),
            "not allowed with http_* conditions in one [[app.match]] (the payload of an HTTP flow starts with its request line: use http_method or http_path_suffix)",
        );
    }
    if request && response {
        p.add(
            format!("{key}.http_content_type"),
            "the response's Content-Type cannot be combined with conditions on the request (http_method, http_path_suffix, http_user_agent) in one [[app.match]]: write two blocks",
        );
    }
}

/// A payload length or an inclusive range of them: `148`, `"4-516"`.
fn parse_len(text: &str) -> Result<PortRange, String> {
    PortRange::parse_named(text, "length", "148 or \"4-516\"")
}
