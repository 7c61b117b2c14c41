//! The few TCP header fields the WAN-delay meter and the window clamp
//! read: sequence and acknowledgement numbers, flags, the window, and the
//! timestamp and window-scale options (RFC 7323).
//! Checked reads of an untrusted header: a short or malformed header gives
//! `None`, never a panic.

/// What the meter needs of one TCP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpView {
    /// Sequence number of the first payload byte (of the SYN itself for a
    /// SYN).
    pub seq: u32,
    /// Acknowledgement number (meaningful with the ACK flag).
    pub ack: u32,
    /// Flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10).
    pub flags: u8,
    /// The timestamp option: (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
}

/// TCP option kinds.
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_WINDOW_SCALE: u8 = 3;
const OPT_TIMESTAMPS: u8 = 8;
const OPT_MD5: u8 = 19;
const OPT_AO: u8 = 29;

impl TcpView {
    /// Reads `header` (the TCP header with its options).
    #[inline]
    pub fn parse(header: &[u8]) -> Option<TcpView> {
        let word = |at: usize| -> Option<u32> {
            let b: [u8; 4] = header.get(at..at + 4)?.try_into().ok()?;
            Some(u32::from_be_bytes(b))
        };
        let seq = word(4)?;
        let ack = word(8)?;
        let flags = *header.get(13)?;
        let options = header.get(20..).unwrap_or_default();
        Some(TcpView {
            seq,
            ack,
            flags,
            timestamps: timestamps(options),
        })
    }

    /// The SYN flag is set.
    pub fn syn(&self) -> bool {
        self.flags & crate::packet::TCP_SYN != 0
    }

    /// The ACK flag is set.
    pub fn has_ack(&self) -> bool {
        self.flags & crate::packet::TCP_ACK != 0
    }
}

/// The timestamp option in `options`, if present and well formed. The
/// common layout (NOP, NOP, TS) is tried first.
#[inline]
fn timestamps(options: &[u8]) -> Option<(u32, u32)> {
    let read = |o: &[u8]| -> Option<(u32, u32)> {
        let val: [u8; 4] = o.get(2..6)?.try_into().ok()?;
        let ecr: [u8; 4] = o.get(6..10)?.try_into().ok()?;
        Some((u32::from_be_bytes(val), u32::from_be_bytes(ecr)))
    };
    if let [OPT_NOP, OPT_NOP, OPT_TIMESTAMPS, 10, ..] = options {
        return read(options.get(2..)?);
    }
    read(option(options, OPT_TIMESTAMPS, 10)?)
}

/// The option `kind` of length `len` in `options` (kind and length bytes
/// included), if present and well formed.
fn option(options: &[u8], kind: u8, len: u8) -> Option<&[u8]> {
    let mut rest = options;
    // At most 40 bytes of options: the walk is bounded.
    while let Some(&k) = rest.first() {
        match k {
            OPT_END => return None,
            OPT_NOP => rest = rest.get(1..)?,
            _ => {
                let l = *rest.get(1)?;
                if l < 2 {
                    return None;
                }
                if k == kind {
                    return if l == len {
                        rest.get(..usize::from(len))
                    } else {
                        None
                    };
                }
                rest = rest.get(usize::from(l)..)?;
            }
        }
    }
    None
}

/// The window-scale option's shift in a SYN's TCP header (with its
/// options), if it carries one; RFC 7323 caps the shift at 14.
pub fn window_scale(header: &[u8]) -> Option<u8> {
    let o = option(header.get(20..)?, OPT_WINDOW_SCALE, 3)?;
    Some((*o.get(2)?).min(14))
}

/// Whether a TCP header carries a TCP-MD5 signature (RFC 2385) or a
/// TCP-AO MAC (RFC 5925): both cover the window field.
pub fn signed(header: &[u8]) -> bool {
    let Some(mut rest) = header.get(20..) else {
        return false;
    };
    // At most 40 bytes of options: the walk is bounded.
    while let Some(&k) = rest.first() {
        match k {
            OPT_END => return false,
            OPT_NOP => rest = rest.get(1..).unwrap_or_default(),
            OPT_MD5 | OPT_AO => return true,
            _ => match rest.get(1).map(|&l| usize::from(l)) {
                Some(l) if l >= 2 => rest = rest.get(l..).unwrap_or_default(),
                _ => return false,
            },
        }
    }
    false
}

/// The 16-bit window field of a TCP header (unscaled).
pub fn window_field(header: &[u8]) -> Option<u16> {
    let b: [u8; 2] = header.get(14..16)?.try_into().ok()?;
    Some(u16::from_be_bytes(b))
}

/// `a` comes before `b` in sequence space (RFC 1982 arithmetic).
#[inline]
pub fn seq_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(options: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h[4..8].copy_from_slice(&1000u32.to_be_bytes());
        h[8..12].copy_from_slice(&2000u32.to_be_bytes());
        h[12] = (((20 + options.len()) / 4) as u8) << 4;
        h[13] = 0x12;
        h.extend_from_slice(options);
        h
    }

    #[test]
    fn reads_the_usual_layout_and_any_other() {
        let ts = [1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9];
        let v = TcpView::parse(&header(&ts)).unwrap();
        assert_eq!((v.seq, v.ack, v.flags), (1000, 2000, 0x12));
        assert!(v.syn() && v.has_ack());
        assert_eq!(v.timestamps, Some((7, 9)));
        // MSS, SACK-permitted, then timestamps, as a SYN carries them.
        let syn = [2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 1, 0, 0, 0, 0, 0];
        assert_eq!(
            TcpView::parse(&header(&syn)).unwrap().timestamps,
            Some((256, 0))
        );
    }

    #[test]
    fn malformed_options_give_none_not_a_panic() {
        for opts in [
            &[8, 10, 0, 0][..],             // truncated
            &[8, 6, 0, 0, 0, 0][..],        // wrong length
            &[3, 0, 8, 10][..],             // zero-length option
            &[0, 8, 10, 0, 0, 0, 0, 0][..], // after END
            &[1, 1, 1][..],
        ] {
            assert_eq!(TcpView::parse(&header(opts)).unwrap().timestamps, None);
        }
        assert_eq!(TcpView::parse(&[0u8; 12]), None);
    }

    #[test]
    fn reads_the_window_and_its_scale() {
        // MSS, SACK-permitted, timestamps, NOP, window scale 7: Linux's SYN.
        let syn = [
            2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 1, 0, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        let mut h = header(&syn);
        h[14..16].copy_from_slice(&64240u16.to_be_bytes());
        assert_eq!(window_scale(&h), Some(7));
        assert_eq!(window_field(&h), Some(64240));
        assert_eq!(window_scale(&header(&[3, 3, 30])), Some(14), "capped");
        for opts in [
            &[2, 4, 5, 0xb4][..], // no window scale
            &[3, 4, 7, 0][..],    // wrong length
            &[3, 3][..],          // truncated
            &[0, 3, 3, 7][..],    // after END
        ] {
            assert_eq!(window_scale(&header(opts)), None, "{opts:?}");
        }
        assert_eq!(window_field(&[0u8; 15]), None);
        // Signed segments: TCP-MD5 (19) and TCP-AO (29), after others.
        assert!(signed(&header(&[1, 1, 19, 18, 0, 0, 0, 0])));
        assert!(signed(&header(&[
            1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 29, 4, 0, 0
        ])));
        assert!(!signed(&header(&syn)));
        assert!(!signed(&header(&[3, 0, 19, 18])), "malformed: not read on");
    }

    #[test]
    fn sequence_order_wraps() {
        assert!(seq_before(1, 2));
        assert!(seq_before(u32::MAX, 3));
        assert!(!seq_before(3, u32::MAX));
        assert!(!seq_before(5, 5));
    }
}
