//! Agora's SD-RTN (the real-time network behind many apps' calls and live
//! video): the first datagram of a client's session names the edge it
//! joins in clear, after a fixed header: a message type byte 0x21 at
//! offset 6 and, at offset 12, the tag "\x04SNI" followed by the name's
//! 16-bit length, a zero byte and the name.
//!
//! Layout as described by nDPI's SD-RTN dissector (LGPL; read, not
//! copied).

use super::tls::plausible_host;

/// Offset of the message type.
const TYPE_AT: usize = 6;
/// The message type of a session's opening message.
const OPENING: u8 = 0x21;
/// Offset of the tag.
const TAG_AT: usize = 12;
/// The tag before the name.
const TAG: &[u8; 4] = b"\x04SNI";
/// Offset of the name.
const NAME_AT: usize = 19;

/// The edge host name an SD-RTN opening datagram names, if `payload` is
/// one.
pub fn sd_rtn_host(payload: &[u8]) -> Option<&str> {
    if payload.get(TYPE_AT) != Some(&OPENING) || payload.get(TAG_AT..TAG_AT + 4)? != TAG {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*payload.get(16)?, *payload.get(17)?]));
    if payload.get(18) != Some(&0) {
        return None;
    }
    plausible_host(payload.get(NAME_AT..NAME_AT.checked_add(len)?)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An opening datagram naming `host`, built from the layout above.
    pub(crate) fn opening(host: &str) -> Vec<u8> {
        let mut p = vec![0x5a; 6];
        p.push(OPENING);
        p.extend([0x11; 5]);
        p.extend(TAG);
        p.extend((host.len() as u16).to_be_bytes());
        p.push(0);
        p.extend(host.as_bytes());
        p.extend([0u8; 24]);
        p
    }

    #[test]
    fn the_edge_name_is_read() {
        let p = opening("edge-12.ap.sd-rtn.com");
        assert_eq!(sd_rtn_host(&p), Some("edge-12.ap.sd-rtn.com"));
        // Another message type, another tag, a name running past the end,
        // a non-zero separator, a name that is no host name: nothing.
        let mut other = p.clone();
        other[TYPE_AT] = 0x22;
        assert_eq!(sd_rtn_host(&other), None);
        let mut tag = p.clone();
        tag[13] = b'X';
        assert_eq!(sd_rtn_host(&tag), None);
        let mut long = p.clone();
        long[16] = 0x7f;
        assert_eq!(sd_rtn_host(&long), None);
        let mut sep = p.clone();
        sep[18] = 1;
        assert_eq!(sd_rtn_host(&sep), None);
        assert_eq!(sd_rtn_host(&opening("bad name!")), None);
        for cut in 0..p.len() {
            let _ = sd_rtn_host(&p[..cut]);
        }
    }
}
