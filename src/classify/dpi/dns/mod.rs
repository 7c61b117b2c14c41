//! DNS snooping: read the answers a resolver sends back so that a flow to an
//! address can be named after the host name the client looked up, even when
//! the flow's own packets carry no name (an IP-only QUIC flow, a TLS session
//! resumed without SNI, plain RTP to a media relay).
//!
//! `wire` parses the messages ([`parse_response`], [`parse_response_tcp`]);
//! [`DnsCache`] (`cache`) is the shared map from address to name that the
//! data path fills from the answers it forwards and reads when a new flow
//! starts.

mod cache;
mod wire;

pub use cache::{DnsCache, MAX_TTL, MIN_TTL};
pub use wire::{
    CLASS_IN, DnsAddress, DnsAddresses, DnsHeader, DnsName, DnsQuestion, DnsResponse, MAX_ANSWERS,
    MAX_CHAIN, MAX_NAME_LEN, TYPE_A, TYPE_AAAA, TYPE_CNAME, parse_response, parse_response_tcp,
    query_name,
};

#[cfg(test)]
mod tests;
