//! RTCP (RFC 3550, section 6.4) as read for round trips: a sender report
//! (SR) that a LAN phone sends carries its NTP time; the far end's next
//! report block about that phone echoes the middle 32 bits of it (LSR)
//! and how long it held it (DLSR). So a call gives WAN round trips with
//! no probe of qosd's: from the SR leaving qosd to the report arriving,
//! less the far end's hold. The packets are walked by the classifier's
//! checked RTCP parser; SRTCP (encrypted report bodies) is not timed.

use crate::classify::dpi::rtp::{self, RTCP_RR, RTCP_SR, be32};

/// Whether `p` starts like an RTCP SR or RR (version 2): the cheap filter
/// every UDP packet from the WAN passes through before anything else.
#[inline]
pub fn looks_like_rtcp(p: &[u8]) -> bool {
    p.len() >= 8 && matches!(p, [b0, pt, ..] if b0 >> 6 == 2 && (*pt == RTCP_SR || *pt == RTCP_RR))
}

/// The key a sender report is answered by: the middle 32 bits of its NTP
/// timestamp, when `p` is a plain compound RTCP packet that starts with an
/// SR (in SRTCP the time is encrypted, and nothing would echo it).
pub fn sender_report_key(p: &[u8]) -> Option<u32> {
    let info = rtp::rtcp(p)?;
    if info.first_type != RTCP_SR || info.is_srtcp() {
        return None;
    }
    let key = be32(p, 10)?;
    // An NTP time of zero means the sender has no wallclock: nothing to
    // match on.
    (key != 0).then_some(key)
}

/// In the compound RTCP packet `p`, the hold (DLSR, in 1/65536 s) of the
/// report block that echoes `key` as its LSR, if one does.
pub fn hold_for(p: &[u8], key: u32) -> Option<u32> {
    rtp::rtcp_report_blocks(p)
        .find(|b| be32(b, 16) == Some(key))
        .and_then(|b| be32(b, 20))
}

/// An RTCP packet of type `pt` (SR or RR) with an NTP time (SR only) and
/// report blocks (LSR, DLSR), for tests.
#[cfg(test)]
pub(crate) fn packet(pt: u8, ntp: u64, blocks: &[(u32, u32)]) -> Vec<u8> {
    let mut p = vec![0x80 | blocks.len() as u8, pt, 0, 0, 0x11, 0x22, 0x33, 0x44];
    if pt == RTCP_SR {
        p.extend_from_slice(&ntp.to_be_bytes());
        p.extend_from_slice(&[0u8; 12]);
    }
    for (lsr, dlsr) in blocks {
        p.extend_from_slice(&[0u8; 16]);
        p.extend_from_slice(&lsr.to_be_bytes());
        p.extend_from_slice(&dlsr.to_be_bytes());
    }
    let words = (p.len() / 4 - 1) as u16;
    p[2..4].copy_from_slice(&words.to_be_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sr(ntp: u64, blocks: &[(u32, u32)]) -> Vec<u8> {
        packet(RTCP_SR, ntp, blocks)
    }

    fn rr(blocks: &[(u32, u32)]) -> Vec<u8> {
        packet(RTCP_RR, 0, blocks)
    }

    #[test]
    fn a_sender_report_is_keyed_by_the_middle_of_its_ntp_time() {
        let p = sr(0xAAAA_BBBB_CCCC_DDDD, &[]);
        assert_eq!(sender_report_key(&p), Some(0xBBBB_CCCC));
        assert_eq!(sender_report_key(&rr(&[])), None, "a receiver report");
        assert_eq!(sender_report_key(&p[..20]), None, "truncated");
        assert_eq!(sender_report_key(&sr(0, &[])), None, "no wallclock");
        // SRTCP: the same SR with an encrypted tail, index and tag.
        let mut srtcp = p.clone();
        srtcp.extend_from_slice(&[0x80, 0, 0, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]);
        assert_eq!(sender_report_key(&srtcp), None);
        // RTP (payload type 0, 96...) and QUIC do not pass the filter.
        assert!(!looks_like_rtcp(&[0x80, 0x60, 0, 1, 0, 0, 0, 0]));
        assert!(!looks_like_rtcp(&[0xC3, 0xC8, 0, 1, 0, 0, 0, 0]));
        assert!(looks_like_rtcp(&p));
    }

    #[test]
    fn the_echo_is_found_in_any_block_of_a_compound_packet() {
        // An SR of the far end's own, then an RR: the echo is in the RR's
        // second block.
        let mut p = sr(7, &[(0x0101_0101, 5)]);
        p.extend(rr(&[(0x0202_0202, 6), (0xBBBB_CCCC, 0x8000)]));
        assert_eq!(hold_for(&p, 0xBBBB_CCCC), Some(0x8000));
        assert_eq!(hold_for(&p, 0x0101_0101), Some(5));
        assert_eq!(hold_for(&p, 0x0909_0909), None);
    }

    #[test]
    fn malformed_packets_are_no_answer() {
        // A length past the end, a count past the body, a wrong version.
        let mut p = rr(&[(0xBBBB_CCCC, 1)]);
        p[3] = 200;
        assert_eq!(hold_for(&p, 0xBBBB_CCCC), None);
        let mut q = rr(&[(0xBBBB_CCCC, 1)]);
        q[0] = 0x80 | 5;
        assert_eq!(hold_for(&q, 0xBBBB_CCCC), None);
        let mut r = rr(&[(0xBBBB_CCCC, 1)]);
        r[0] = 0x40 | 1;
        assert_eq!(hold_for(&r, 0xBBBB_CCCC), None);
        let whole = rr(&[(0xBBBB_CCCC, 1), (2, 3)]);
        for n in 0..whole.len() {
            assert_eq!(hold_for(&whole[..n], 0xBBBB_CCCC), None, "cut at {n}");
            let _ = sender_report_key(&whole[..n]);
        }
    }
}
