//! Deep packet inspection: small, checked parsers that read what a flow's
//! first packets reveal (host names, media protocols). Each never panics on
//! any input and never allocates unless its doc says so.

pub mod agora;
pub mod dns;
pub mod dtls;
pub mod http;
pub mod quic;
pub mod rpc;
pub mod rtp;
pub mod stun;
pub mod tls;
pub mod tls_server;
pub mod zoom;

/// What a parser made of the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse<T> {
    /// The protocol was recognised and this is what it says.
    Found(T),
    /// The bytes start like this protocol but stop too early; more of the
    /// stream (the next TCP segment, the next datagram) is needed.
    NeedMore,
    /// The bytes are not this protocol (or are malformed).
    NotThis,
}

/// Helpers for the parsers' tests.
#[cfg(test)]
pub(crate) mod test_util {
    /// Bytes from hex text (whitespace ignored).
    pub fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
