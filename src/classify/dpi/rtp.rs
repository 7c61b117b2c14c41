//! RTP and RTCP (RFC 3550), and a tiny per-flow tracker that decides from a
//! flow's first packets whether it carries real-time media, and guesses
//! whether that is audio or video.
//!
//! RTP has no magic number: one packet that parses proves little (a quarter
//! of random bytes have version 2). The header checks here are what makes a
//! packet *possible* RTP; [`MediaTracker`] is what makes a flow RTP (a
//! stable SSRC with advancing sequence numbers over several packets).
//!
//! Media is nowadays mostly SRTP/SRTCP (RFC 3711): the RTP header and the
//! first RTCP header stay in clear, so everything here works on encrypted
//! media too; an SRTCP packet ends in an index and an authentication tag
//! that [`rtcp`] reports as `trailing` bytes.
//!
//! Everything is allocation-free and bounds-checked.

use crate::time::Instant;

/// RTCP packet type: sender report.
pub const RTCP_SR: u8 = 200;
/// RTCP packet type: receiver report.
pub const RTCP_RR: u8 = 201;
/// RTCP packet type: source description.
pub const RTCP_SDES: u8 = 202;
/// RTCP packet type: goodbye.
pub const RTCP_BYE: u8 = 203;
/// RTCP packet type: application-defined.
pub const RTCP_APP: u8 = 204;
/// RTCP packet type: transport-layer feedback (RFC 4585).
pub const RTCP_RTPFB: u8 = 205;
/// RTCP packet type: payload-specific feedback (RFC 4585).
pub const RTCP_PSFB: u8 = 206;
/// RTCP packet type: extended reports (RFC 3611).
pub const RTCP_XR: u8 = 207;

#[inline]
fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

/// The big-endian u32 at `off` of `b`, if it is there.
#[inline]
pub(crate) fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off + 4)?;
    Some(u32::from_be_bytes(s.try_into().ok()?))
}

/// RFC 5761 section 4: when RTP and RTCP share a port, a packet whose
/// second byte is in 192..=223 is RTCP (RTP must then avoid payload types
/// 64-95). Takes the second byte of the packet.
#[inline]
pub fn is_rtcp_range(second_byte: u8) -> bool {
    (192..=223).contains(&second_byte)
}

/// The fixed RTP header and what the lengths in it imply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// P bit: the payload ends with padding.
    pub padding: bool,
    /// X bit: a header extension follows the CSRC list.
    pub extension: bool,
    /// Number of CSRC identifiers (0-15).
    pub csrc_count: u8,
    /// M bit (end of a video frame, start of a talk spurt).
    pub marker: bool,
    /// Payload type (0-127).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// The header extension's "defined by profile" field (0xBEDE for
    /// RFC 8285 one-byte extensions), if any.
    pub extension_profile: Option<u16>,
    /// Bytes of header: 12 + CSRCs + extension.
    pub header_len: usize,
    /// Bytes of media payload (neither header nor padding).
    pub payload_len: usize,
}

/// Parses an RTP header (version 2). The CSRC list, header extension and
/// padding must fit in `payload`; second bytes that RFC 5761 assigns to
/// RTCP (192-223) and the payload types RFC 3551 reserves to avoid RTCP
/// conflicts (72-76) are refused.
pub fn rtp_header(payload: &[u8]) -> Option<RtpHeader> {
    let b0 = *payload.first()?;
    let b1 = *payload.get(1)?;
    if b0 >> 6 != 2 || is_rtcp_range(b1) {
        return None;
    }
    let payload_type = b1 & 0x7f;
    if (72..=76).contains(&payload_type) {
        return None;
    }
    let csrc_count = b0 & 0x0f;
    let padding = b0 & 0x20 != 0;
    let extension = b0 & 0x10 != 0;
    let mut header_len = 12 + 4 * usize::from(csrc_count);
    if payload.len() < header_len {
        return None;
    }
    let mut extension_profile = None;
    if extension {
        let profile = be16(payload, header_len)?;
        let words = usize::from(be16(payload, header_len + 2)?);
        header_len += 4 + 4 * words;
        if payload.len() < header_len {
            return None;
        }
        extension_profile = Some(profile);
    }
    let mut pad = 0;
    if padding {
        pad = usize::from(*payload.last()?);
        if pad == 0 || header_len + pad > payload.len() {
            return None;
        }
    }
    Some(RtpHeader {
        padding,
        extension,
        csrc_count,
        marker: b1 & 0x80 != 0,
        payload_type,
        sequence: be16(payload, 2)?,
        timestamp: be32(payload, 4)?,
        ssrc: be32(payload, 8)?,
        extension_profile,
        header_len,
        payload_len: payload.len() - header_len - pad,
    })
}

/// Summary of an RTCP (compound) packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpInfo {
    /// Number of RTCP packets walked in the compound packet.
    pub packets: u8,
    /// Type of the first packet (200-207).
    pub first_type: u8,
    /// Bit `t - 200` is set for each packet type `t` seen.
    pub types: u8,
    /// SSRC of the first packet's sender (0 if it has none, e.g. an empty
    /// SDES or BYE).
    pub ssrc: u32,
    /// Bytes after the last packet that could be walked: the encrypted
    /// remainder, SRTCP index and authentication tag of an SRTCP packet;
    /// 0 for plain RTCP.
    pub trailing: usize,
}

impl RtcpInfo {
    /// True if a packet of type `t` (200-207) was seen.
    pub fn has(&self, t: u8) -> bool {
        t.checked_sub(RTCP_SR)
            .filter(|&i| i < 8)
            .is_some_and(|i| self.types & (1 << i) != 0)
    }
    /// True if the packet carries SRTCP protection (trailing bytes).
    pub fn is_srtcp(&self) -> bool {
        self.trailing > 0
    }
}

/// Checks one RTCP packet header at the start of `b`; returns its type,
/// size in bytes and whether its P bit is set.
fn rtcp_packet(b: &[u8]) -> Option<(u8, usize, bool)> {
    let b0 = *b.first()?;
    let pt = *b.get(1)?;
    if b0 >> 6 != 2 || !(RTCP_SR..=RTCP_XR).contains(&pt) {
        return None;
    }
    let size = (usize::from(be16(b, 2)?) + 1) * 4;
    if size > b.len() {
        return None;
    }
    let count = usize::from(b0 & 0x1f);
    let min = match pt {
        RTCP_SR => 28 + 24 * count,
        RTCP_RR => 8 + 24 * count,
        RTCP_SDES => 4 + 8 * count,
        RTCP_BYE => 4 + 4 * count,
        RTCP_APP | RTCP_RTPFB | RTCP_PSFB => 12,
        _ => 8, // XR
    };
    if size < min {
        return None;
    }
    Some((pt, size, b0 & 0x20 != 0))
}

/// Parses an RTCP packet (a compound packet: several RTCP packets back to
/// back), checking every header's version, type (200-207) and length
/// against the bytes and the report counts.
///
/// Bytes left after the walk stops (`trailing`) are accepted only in the
/// SRTCP shape: at least 4 of them (the E flag + SRTCP index) behind a
/// first packet that may begin a compound packet (SR, RR, or RFC 5506
/// reduced-size feedback). A plain packet with its P bit set must have a
/// consistent padding count.
pub fn rtcp(payload: &[u8]) -> Option<RtcpInfo> {
    let (first_type, first_size, _) = rtcp_packet(payload)?;
    let mut info = RtcpInfo {
        packets: 1,
        first_type,
        types: 1 << (first_type - RTCP_SR),
        ssrc: if first_size >= 8 {
            be32(payload, 4)?
        } else {
            0
        },
        trailing: 0,
    };
    let mut off = first_size;
    let mut last = (0, first_size);
    while let Some((pt, size, _)) = payload.get(off..).and_then(rtcp_packet) {
        info.packets = info.packets.saturating_add(1);
        info.types |= 1 << (pt - RTCP_SR);
        last = (off, size);
        off += size;
    }
    info.trailing = payload.len() - off;
    if info.trailing == 0 {
        // Plain RTCP: only the last packet may be padded, consistently.
        let (start, size) = last;
        let padded = payload.get(start).is_some_and(|b| b & 0x20 != 0);
        if padded {
            let pad = usize::from(*payload.get(start + size - 1)?);
            if pad == 0 || pad > size - 4 {
                return None;
            }
        }
    } else if info.trailing < 4 || !matches!(first_type, RTCP_SR | RTCP_RR | RTCP_RTPFB | RTCP_PSFB)
    {
        return None;
    }
    Some(info)
}

/// The report blocks (24 bytes each: SSRC, loss, highest sequence,
/// jitter, LSR, DLSR) of the SR and RR packets in the compound RTCP
/// packet `payload`, as far as its headers check out.
pub fn rtcp_report_blocks(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut off = 0usize;
    std::iter::from_fn(move || {
        let rest = payload.get(off..)?;
        let (pt, size, _) = rtcp_packet(rest)?;
        off += size;
        Some((pt, rest.get(..size)?, rest.first().map_or(0, |b| b & 0x1f)))
    })
    .flat_map(|(pt, packet, count)| {
        let first = if pt == RTCP_SR { 28 } else { 8 };
        let blocks = if matches!(pt, RTCP_SR | RTCP_RR) {
            usize::from(count)
        } else {
            0
        };
        (0..blocks).filter_map(move |i| packet.get(first + 24 * i..first + 24 * (i + 1)))
    })
}

/// An RTP or an RTCP packet, as told apart on a shared port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpOrRtcp {
    /// An RTP packet.
    Rtp(RtpHeader),
    /// An RTCP packet.
    Rtcp(RtcpInfo),
}

/// Demultiplexes RTP and RTCP sharing one port as RFC 5761 section 4 does
/// (by the second byte), then parses the one it is.
pub fn rtp_or_rtcp(payload: &[u8]) -> Option<RtpOrRtcp> {
    if is_rtcp_range(*payload.get(1)?) {
        rtcp(payload).map(RtpOrRtcp::Rtcp)
    } else {
        rtp_header(payload).map(RtpOrRtcp::Rtp)
    }
}

/// Audio, video, or not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaKind {
    /// Not (yet) known.
    #[default]
    Unknown,
    /// Voice or other audio.
    Audio,
    /// Video (or screen sharing).
    Video,
}

/// Audio or video from an RTP static payload type (RFC 3551 tables 4-5);
/// `Unknown` for dynamic (96-127) and unassigned types.
pub fn static_payload_kind(pt: u8) -> MediaKind {
    match pt {
        0..=18 => MediaKind::Audio,
        25 | 26 | 28 | 31..=34 => MediaKind::Video,
        _ => MediaKind::Unknown,
    }
}

/// What [`MediaTracker`] concluded about a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaVerdict {
    /// Several packets of one SSRC with advancing sequence numbers were
    /// seen: this is RTP (or SRTP).
    pub rtp: bool,
    /// Small packets arrive at a regular 10-60 ms interval: real-time
    /// traffic whatever its protocol.
    pub isochronous: bool,
    /// Audio or video, as far as it can be told.
    pub kind: MediaKind,
}

/// Consecutive in-order packets of one SSRC that make a flow RTP.
pub const RTP_CONFIRM_PACKETS: u8 = 4;
/// Regular intervals needed before calling a flow isochronous.
pub const ISOCHRONOUS_INTERVALS: u16 = 8;
/// Packets up to this size (UDP payload bytes) count as "small".
pub const SMALL_PACKET: usize = 300;
/// Packets below this size are too small to carry media (keep-alives,
/// probes, acknowledgements) and do not count as isochronous.
pub const MIN_MEDIA_PACKET: usize = 20;
/// Packets from this size on count as "large" (video-like).
pub const LARGE_PACKET: usize = 700;
const MIN_PERIOD_NS: u64 = 10_000_000;
const MAX_PERIOD_NS: u64 = 60_000_000;
const BURST_GAP_NS: u64 = 2_000_000;
const SSRC_SLOTS: usize = 4;

#[derive(Debug, Clone, Copy, Default)]
struct SsrcSlot {
    ssrc: u32,
    seq: u16,
    ts: u32,
    run: u8,
    pt: u8,
    used: bool,
}

/// Per-flow-direction media detector: fixed size (about 100 bytes), `Copy`,
/// no allocation. Keep one per direction of a flow: interleaving both
/// directions breaks the interval measurement.
///
/// - RTP: up to 4 SSRCs are followed (WebRTC bundles audio, video and
///   retransmissions on one 5-tuple); one with [`RTP_CONFIRM_PACKETS`]
///   packets in a row with sequence numbers advancing by 1-100 and
///   non-decreasing timestamps makes the flow RTP.
/// - Isochronous: small packets ([`MIN_MEDIA_PACKET`]..=[`SMALL_PACKET`]
///   bytes) whose interval is steady
///   (within a quarter of its running mean, or 3 ms) and between 10 and
///   60 ms, [`ISOCHRONOUS_INTERVALS`] times and at least 3 times as often
///   as not.
/// - Audio or video: an RTP static payload type decides; otherwise video
///   if a quarter of the packets are large or arrive in bursts, audio if
///   none is large and the flow is isochronous. Counters are halved every
///   1024 packets so the guess follows the flow.
#[derive(Debug, Clone, Copy, Default)]
pub struct MediaTracker {
    slots: [SsrcSlot; SSRC_SLOTS],
    rtp: bool,
    packets: u16,
    last_at: Option<Instant>,
    mean_gap_ns: u64,
    regular: u16,
    irregular: u16,
    large: u16,
    bursts: u16,
    isochronous: bool,
}

impl MediaTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one packet of the flow direction: its UDP payload length, its
    /// RTP header if it parsed as one (RTCP, STUN, DTLS... pass `None`),
    /// and its arrival time. Returns the verdict once the flow is known to
    /// be RTP or isochronous (and on every later packet), else `None`.
    pub fn observe(
        &mut self,
        payload_len: usize,
        rtp: Option<&RtpHeader>,
        now: Instant,
    ) -> Option<MediaVerdict> {
        if self.packets >= 1024 {
            self.packets /= 2;
            self.regular /= 2;
            self.irregular /= 2;
            self.large /= 2;
            self.bursts /= 2;
        }
        self.packets += 1;
        if let Some(h) = rtp {
            self.observe_rtp(h);
        }
        if payload_len >= LARGE_PACKET {
            self.large = self.large.saturating_add(1);
        }
        if let Some(last) = self.last_at {
            // Capped so that the running mean cannot overflow.
            let gap = now.nanos_since(last).min(10_000_000_000);
            if gap < BURST_GAP_NS {
                self.bursts = self.bursts.saturating_add(1);
            }
            self.observe_gap(gap, payload_len);
        }
        self.last_at = Some(now);
        self.verdict()
    }

    fn observe_rtp(&mut self, h: &RtpHeader) {
        let idx = match self.slots.iter().position(|s| s.used && s.ssrc == h.ssrc) {
            Some(i) => i,
            None => {
                // A free slot, else the one with the shortest run.
                let i = self
                    .slots
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| (s.used, s.run))
                    .map_or(0, |(i, _)| i);
                if let Some(s) = self.slots.get_mut(i) {
                    *s = SsrcSlot {
                        ssrc: h.ssrc,
                        seq: h.sequence,
                        ts: h.timestamp,
                        run: 1,
                        pt: h.payload_type,
                        used: true,
                    };
                }
                return;
            }
        };
        let Some(s) = self.slots.get_mut(idx) else {
            return;
        };
        let dseq = h.sequence.wrapping_sub(s.seq);
        let dts = h.timestamp.wrapping_sub(s.ts);
        if (1..=100).contains(&dseq) && dts < 0x8000_0000 {
            s.run = s.run.saturating_add(1);
        } else if dseq != 0 {
            s.run = 1; // a jump: start over from here
        }
        s.seq = h.sequence;
        s.ts = h.timestamp;
        s.pt = h.payload_type;
        if s.run >= RTP_CONFIRM_PACKETS {
            self.rtp = true;
        }
    }

    fn observe_gap(&mut self, gap: u64, payload_len: usize) {
        if !(MIN_MEDIA_PACKET..=SMALL_PACKET).contains(&payload_len) {
            self.irregular = self.irregular.saturating_add(1);
            return;
        }
        if self.mean_gap_ns == 0 {
            self.mean_gap_ns = gap.max(1);
            return;
        }
        let mean = self.mean_gap_ns;
        let tolerance = (mean / 4).max(3_000_000);
        let steady = gap.abs_diff(mean) <= tolerance;
        if steady && (MIN_PERIOD_NS..=MAX_PERIOD_NS).contains(&mean) {
            self.regular = self.regular.saturating_add(1);
        } else {
            self.irregular = self.irregular.saturating_add(1);
        }
        // EWMA with weight 1/8; outliers (silence, losses) are capped so a
        // pause does not throw the mean off for long.
        let sample = gap.min(mean.saturating_mul(2));
        self.mean_gap_ns = (mean * 7 + sample) / 8;
        if self.regular >= ISOCHRONOUS_INTERVALS && self.regular >= self.irregular.saturating_mul(3)
        {
            self.isochronous = true;
        }
    }

    /// The guess at audio or video from what has been seen so far.
    pub fn kind(&self) -> MediaKind {
        let mut audio_pt = false;
        for s in self.slots.iter().filter(|s| s.used && s.run >= 2) {
            match static_payload_kind(s.pt) {
                MediaKind::Video => return MediaKind::Video,
                MediaKind::Audio => audio_pt = true,
                MediaKind::Unknown => {}
            }
        }
        if self.packets >= 8 {
            let p = self.packets;
            if self.large.saturating_mul(4) >= p
                || (self.bursts.saturating_mul(4) >= p && self.large > 0)
            {
                return MediaKind::Video;
            }
        }
        if audio_pt || (self.isochronous && self.large == 0) {
            return MediaKind::Audio;
        }
        MediaKind::Unknown
    }

    /// The current verdict, if there is one (see [`MediaTracker::observe`]).
    pub fn verdict(&self) -> Option<MediaVerdict> {
        (self.rtp || self.isochronous).then(|| MediaVerdict {
            rtp: self.rtp,
            isochronous: self.isochronous,
            kind: self.kind(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::classify::dpi::test_util::hex;

    // false_positives.pcapng #5: PCMA (PT 8), 160 bytes of audio.
    const PCMA: &str = "80080f62436d6bfc34127856d5d5d555d5d5d5d5d5d5d55555d5d555555555555555555555555555d555d5d5d5d5d5d5\
     d5d5d5d5d5d5d555d5555555d55555555555d5d555555555d5d555d5d5d555d5d5d5555555d5d5555555555555555555\
     d555d55555d55555555555d555d5d555d555d5d5d555d555d5d555d555555555d5d5d555555555555555d5d5555555d5\
     d5d5d555d55555d5d5555555555555d5d5d5d555555555d5d555d5d5";
    // stun_classic.pcap #3: G.729 (PT 18) with the marker bit.
    const G729: &str = "8092ae1504e9f9983aa6d92292d8852000fad4afbd2c19c8c2835fb215692dd6";
    // rtcp_multiple_pkts_in_the_same_datagram.pcap #1: SR (1 report) + SDES.
    const SR_SDES: &str = "81c8000c5d931534dd3ac1704d614df800007d00000000c800007d000000000000000001000000000000000000000000\
     0000000081ca000e5d931534010835643933313533340725467265655357495443482e6f7267202d2d20436f6d652074\
     6f20436c7565436f6e2e636f6d000000";
    // same capture #2: RR (1 report) + SDES.
    const RR_SDES: &str = "81c9000701932db400000000010000010000bec200000001000000000000000081ca000e01932db40107313933326462\
     340725467265655357495443482e6f7267202d2d20436f6d6520746f20436c7565436f6e2e636f6d00000000";
    // lru_ipv6_caches.pcapng #1 and #2 (WhatsApp): SRTCP, empty RR + encrypted part.
    const SRTCP_SHORT: &str = "80c90001734e7b28800000051150ddd7bafeb9cbd7ce";
    const SRTCP_LONG: &str = "80c900015a5d5934636869d8cb9dd8f284841d47779bf41161555a9addf39a69f96e9cd080000001c9a4673fced23d5e\
     1a58";
    // discord_mid_flow.pcap #6: SRTCP sender report.
    const DISCORD_SR: &str = "80c8000600162ffdc3f1751ada84f2b87f9f4c38d59c8455715cf8e58038a0e50d716950eb8523970cab0d48f5aadc93\
     aafe1180427749ebca010080";
    // snapchat_call_v1.pcapng #26: SRTCP transport feedback with P bit.
    const SNAP_FB: &str =
        "afcd0005eff157fa7026ffba66179eb233d4887da18f562cb134a1e8199fd9da7d4294589e9b649d80000001";
    // discord_mid_flow.pcap #3: Discord keep-alive, not RTP.
    const DISCORD_KEEPALIVE: &str = "1337cafea9010000";
    // dns-google-nsid.pcapng #4 (DNS response): first byte 0x4d.
    const DNS: &str = "4d158180000100020000000103777777046e746f70036f72670000010001c00c0005000100000dad0014116e746f702d";
    // lru_ipv6_caches.pcapng #8: STUN binding success response (start).
    const STUN: &str = "010100302112a442447671485446587878483277c05700040003000a00240004027f8bff000800141d9f579a75e612f5";

    /// Real PCMA flow (false_positives.pcapng, 10.192.92.81:52070 ->
    /// 10.136.43.69:21048): arrival in microseconds, header bytes; every
    /// packet is 172 bytes.
    const PCMA_FLOW: [(u64, &str); 15] = [
        (0, "80080f62436d6bfc34127856"),
        (19498, "80080f63436d6c9c34127856"),
        (39652, "80080f64436d6d3c34127856"),
        (59576, "80080f65436d6ddc34127856"),
        (79528, "80080f66436d6e7c34127856"),
        (99577, "80080f67436d6f1c34127856"),
        (119566, "80080f68436d6fbc34127856"),
        (139529, "80080f69436d705c34127856"),
        (159579, "80080f6a436d70fc34127856"),
        (179542, "80080f6b436d719c34127856"),
        (199540, "80080f6c436d723c34127856"),
        (219492, "80080f6d436d72dc34127856"),
        (239590, "80080f6e436d737c34127856"),
        (259500, "80080f6f436d741c34127856"),
        (279504, "80080f70436d74bc34127856"),
    ];

    /// Real SRTP video flow (snapchat_call_v1.pcapng, client -> server,
    /// PT 101 video with an RFC 8285 header extension, PT 97 FEC, two
    /// RTCP SRs): arrival (us), UDP payload length, header bytes.
    const SNAP_FLOW: [(u64, usize, &str); 40] = [
        (0, 60, "80c800060ea5358282e6003d"),
        (262, 1119, "9065644464cdf6ac0ea53582bede000151000100"),
        (9702, 1120, "9065644564cdf6ac0ea53582bede000151000200"),
        (22316, 1120, "90e5644664cdf6ac0ea53582bede000151000300"),
        (28826, 675, "90e5644764ce0e3a0ea53582bede000151000400"),
        (35894, 495, "90e5644864ce18c60ea53582bede000151000500"),
        (42128, 497, "90e10f9764ce18c6d13d7af7bede000151000600"),
        (42468, 497, "90e10f9864ce18c6d13d7af7bede000151000700"),
        (43780, 497, "90e10f9964ce18c6d13d7af7bede000151000800"),
        (46140, 497, "90e10f9a64ce18c6d13d7af7bede000151000900"),
        (49278, 497, "90e10f9b64ce18c6d13d7af7bede000151000a00"),
        (50030, 497, "90e10f9c64ce18c6d13d7af7bede000151000b00"),
        (53692, 497, "90e10f9d64ce18c6d13d7af7bede000151000c00"),
        (53842, 497, "90e10f9e64ce18c6d13d7af7bede000151000d00"),
        (84815, 874, "90e5644964ce24060ea53582bede000151000e00"),
        (133520, 978, "9065644a64ce3bee0ea53582bede000151000f00"),
        (144227, 979, "9065644b64ce3bee0ea53582bede000151001000"),
        (147646, 979, "90e5644c64ce3bee0ea53582bede000151001100"),
        (162761, 676, "90e5644d64ce483c0ea53582bede000151001200"),
        (228323, 585, "90e5644e64ce57000ea53582bede000151001300"),
        (248776, 1259, "90e5644f64ce5f700ea53582bede000151001400"),
        (306962, 1223, "9065645064ce77b20ea53582bede000151001500"),
        (328343, 1224, "9065645164ce77b20ea53582bede000151001600"),
        (331485, 1224, "90e5645264ce77b20ea53582bede000151001700"),
        (386261, 799, "90e5645364ce834c0ea53582bede000151001800"),
        (386281, 395, "90e5645464ce8f9a0ea53582bede000151001900"),
        (400116, 627, "90e5645564ce98be0ea53582bede000151001a00"),
        (473251, 1000, "9065645664ceb20e0ea53582bede000151001b00"),
        (476634, 1000, "9065645764ceb20e0ea53582bede000151001c00"),
        (489871, 1000, "9065645864ceb20e0ea53582bede000151001d00"),
        (495046, 1001, "90e5645964ceb20e0ea53582bede000151001e00"),
        (506269, 1086, "9065645a64cebf100ea53582bede000151001f00"),
        (520709, 1087, "90e5645b64cebf100ea53582bede000151002000"),
        (532588, 520, "90e5645c64cec8340ea53582bede000151002100"),
        (564855, 700, "9065645d64ced4820ea53582bede000151002200"),
        (571423, 701, "90e5645e64ced4820ea53582bede000151002300"),
        (626061, 60, "80c800060ea535827c4c9ad0"),
        (655128, 905, "9065645f64ceedd20ea53582bede000151002400"),
        (655592, 906, "9065646064ceedd20ea53582bede000151002500"),
        (660142, 906, "90e5646164ceedd20ea53582bede000151002600"),
    ];

    /// Header bytes padded with zeros to the packet's length.
    fn packet(header: &str, len: usize) -> Vec<u8> {
        let mut p = hex(header);
        p.resize(len, 0);
        p
    }

    fn us(t: u64) -> Instant {
        Instant::from_nanos(t * 1000)
    }

    #[test]
    fn real_rtp_headers() {
        let h = rtp_header(&hex(PCMA)).unwrap();
        assert_eq!(
            (h.payload_type, h.marker, h.sequence, h.ssrc),
            (8, false, 0x0f62, 0x3412_7856)
        );
        assert_eq!((h.header_len, h.payload_len), (12, 160));
        let h = rtp_header(&hex(G729)).unwrap();
        assert_eq!((h.payload_type, h.marker, h.payload_len), (18, true, 20));
        let p = packet(SNAP_FLOW[1].2, SNAP_FLOW[1].1);
        let h = rtp_header(&p).unwrap();
        assert!(h.extension);
        assert_eq!(h.extension_profile, Some(0xbede));
        assert_eq!((h.payload_type, h.header_len), (101, 20));
        assert!(matches!(rtp_or_rtcp(&p), Some(RtpOrRtcp::Rtp(_))));
        assert_eq!(static_payload_kind(8), MediaKind::Audio);
        assert_eq!(static_payload_kind(34), MediaKind::Video);
        assert_eq!(static_payload_kind(111), MediaKind::Unknown);
    }

    #[test]
    fn inconsistent_rtp_lengths_are_refused() {
        let mut p = hex(G729);
        p[0] = 0x8f; // 15 CSRCs do not fit in 32 bytes
        assert!(rtp_header(&p).is_none());
        let mut p = hex(G729);
        p[0] = 0x90; // extension header claims 0xd885 words
        assert!(rtp_header(&p).is_none());
        let mut p = hex(G729);
        p[0] = 0xa0; // padding: last byte 0xd6 > 20
        assert!(rtp_header(&p).is_none());
        *p.last_mut().unwrap() = 4;
        assert_eq!(rtp_header(&p).unwrap().payload_len, 16);
        *p.last_mut().unwrap() = 0;
        assert!(rtp_header(&p).is_none());
        for n in 0..12 {
            assert!(rtp_header(&hex(PCMA)[..n]).is_none());
        }
        // RTCP range and reserved payload types.
        assert!(rtp_header(&hex(SR_SDES)).is_none());
        let mut p = hex(PCMA);
        p[1] = 72;
        assert!(rtp_header(&p).is_none());
    }

    #[test]
    fn compound_rtcp() {
        let i = rtcp(&hex(SR_SDES)).unwrap();
        assert_eq!((i.packets, i.first_type, i.trailing), (2, RTCP_SR, 0));
        assert!(i.has(RTCP_SR) && i.has(RTCP_SDES) && !i.has(RTCP_RR));
        assert_eq!(i.ssrc, 0x5d93_1534);
        let i = rtcp(&hex(RR_SDES)).unwrap();
        assert_eq!((i.packets, i.first_type), (2, RTCP_RR));
        assert!(!i.is_srtcp());
        assert!(matches!(
            rtp_or_rtcp(&hex(RR_SDES)),
            Some(RtpOrRtcp::Rtcp(_))
        ));
    }

    #[test]
    fn srtcp() {
        let i = rtcp(&hex(SRTCP_SHORT)).unwrap();
        assert_eq!(
            (i.first_type, i.trailing, i.ssrc),
            (RTCP_RR, 14, 0x734e_7b28)
        );
        assert!(i.is_srtcp());
        assert_eq!(rtcp(&hex(SRTCP_LONG)).unwrap().trailing, 42);
        let i = rtcp(&hex(DISCORD_SR)).unwrap();
        assert_eq!((i.first_type, i.trailing), (RTCP_SR, 32));
        let i = rtcp(&hex(SNAP_FB)).unwrap();
        assert_eq!((i.first_type, i.trailing), (RTCP_RTPFB, 20));
    }

    #[test]
    fn malformed_rtcp_is_refused() {
        let full = hex(SR_SDES);
        // Truncations: a cut SDES behind an SR looks like SRTCP (which it
        // cannot be told from) and is reported as trailing bytes; 1-3
        // trailing bytes are not SRTCP; a cut SR is nothing.
        assert_eq!(rtcp(&full[..full.len() - 1]).unwrap().trailing, 59);
        assert!(rtcp(&full[..52 + 2]).is_none());
        for n in 0..52 {
            assert!(rtcp(&full[..n]).is_none(), "{n}");
        }
        // SR claiming 2 report blocks in 52 bytes.
        let mut p = full.clone();
        p[0] = 0x82;
        assert!(rtcp(&p).is_none());
        // Length field pointing past the end.
        let mut p = full.clone();
        p[3] = 0x40;
        assert!(rtcp(&p).is_none());
        // SDES first with trailing garbage is not SRTCP.
        let sdes = &full[52..];
        let mut p = sdes.to_vec();
        p.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        assert!(rtcp(sdes).is_some());
        assert!(rtcp(&p).is_none());
        // Bad padding on plain RTCP.
        let mut p = hex(RR_SDES);
        p[32] |= 0x20;
        *p.last_mut().unwrap() = 0;
        assert!(rtcp(&p).is_none());
        *p.last_mut().unwrap() = 4;
        assert!(rtcp(&p).is_some());
    }

    #[test]
    fn other_protocols_are_not_rtp_or_rtcp() {
        for s in [DISCORD_KEEPALIVE, DNS, STUN] {
            let b = hex(s);
            assert!(rtp_header(&b).is_none(), "{s}");
            assert!(rtcp(&b).is_none(), "{s}");
            assert!(rtp_or_rtcp(&b).is_none(), "{s}");
        }
        assert!(rtcp(&hex(PCMA)).is_none());
    }

    #[test]
    fn real_pcma_flow_is_rtp_isochronous_audio() {
        let mut t = MediaTracker::new();
        let mut first_rtp = None;
        let mut first_iso = None;
        for (i, (at, hdr)) in PCMA_FLOW.iter().enumerate() {
            let p = packet(hdr, 172);
            let h = rtp_header(&p).unwrap();
            if let Some(v) = t.observe(p.len(), Some(&h), us(*at)) {
                first_rtp.get_or_insert(i);
                if v.isochronous {
                    first_iso.get_or_insert(i);
                }
                assert_eq!(v.kind, MediaKind::Audio);
            }
        }
        assert_eq!(first_rtp, Some(3)); // the 4th packet
        assert!(first_iso.unwrap() <= 10);
        let v = t.verdict().unwrap();
        assert!(v.rtp && v.isochronous);
    }

    #[test]
    fn real_snapchat_video_flow() {
        let mut t = MediaTracker::new();
        let mut first = None;
        for (i, (at, len, hdr)) in SNAP_FLOW.iter().enumerate() {
            let p = packet(hdr, *len);
            let media = rtp_or_rtcp(&p);
            let h = match media {
                Some(RtpOrRtcp::Rtp(h)) => Some(h),
                Some(RtpOrRtcp::Rtcp(_)) => None,
                None => panic!("packet {i} not recognised"),
            };
            if t.observe(p.len(), h.as_ref(), us(*at)).is_some() {
                first.get_or_insert(i);
            }
        }
        assert_eq!(first, Some(4));
        let v = t.verdict().unwrap();
        assert!(v.rtp);
        assert!(!v.isochronous);
        assert_eq!(v.kind, MediaKind::Video);
    }

    #[test]
    fn small_regular_non_rtp_packets_are_isochronous_audio() {
        // An encrypted voice flow (no RTP header): 90-130 bytes every
        // 20 ms +- 4 ms of jitter.
        let mut t = MediaTracker::new();
        let mut at = 0u64;
        let mut verdict = None;
        for i in 0..30u64 {
            let jitter = (i * 7919 % 9) * 1000; // 0..8 ms
            verdict = t.observe(90 + (i as usize * 13) % 40, None, us(at + jitter));
            at += 20_000;
        }
        let v = verdict.unwrap();
        assert!(v.isochronous && !v.rtp);
        assert_eq!(v.kind, MediaKind::Audio);
    }

    #[test]
    fn bulk_and_one_shot_flows_get_no_verdict() {
        // Back-to-back full-size packets.
        let mut t = MediaTracker::new();
        for i in 0..200u64 {
            assert!(t.observe(1400, None, us(i * 120)).is_none());
        }
        // Small packets at irregular intervals (a chatty TCP-less protocol).
        let mut t = MediaTracker::new();
        let mut at = 0;
        for i in 0..100u64 {
            at += 1000 + (i * i * 7777) % 200_000;
            assert!(t.observe(100, None, us(at)).is_none());
        }
        // Packets that parse as RTP one by one but with random SSRCs and
        // sequence numbers never make a flow RTP.
        let mut t = MediaTracker::new();
        for i in 0..100u32 {
            let x = i.wrapping_mul(2_654_435_761);
            let h = RtpHeader {
                padding: false,
                extension: false,
                csrc_count: 0,
                marker: false,
                payload_type: 1,
                sequence: (x >> 16) as u16,
                timestamp: x,
                ssrc: x.rotate_left(7),
                extension_profile: None,
                header_len: 12,
                payload_len: 500,
            };
            assert!(t.observe(512, Some(&h), us(u64::from(i) * 3000)).is_none());
        }
        // A DNS response that happens to parse as RTP (first byte 0x91)
        // is one packet: no verdict.
        let dns = packet("915181a00001000d000000010000020001000002000100008fcd", 252);
        let h = rtp_header(&dns);
        assert!(h.is_some());
        let mut t = MediaTracker::new();
        assert!(t.observe(252, h.as_ref(), us(0)).is_none());
    }

    #[test]
    fn tiny_periodic_probes_are_not_media() {
        // nomachine.pcapng, client -> server UDP 4000: 10-byte probes every
        // 20 ms while the session is set up (a remote desktop, not a call).
        const PROBES: [(u64, &str); 11] = [
            (0, "010001000a0000000000"),
            (20072, "010001000a0001000000"),
            (40151, "010001000a0002000000"),
            (60224, "010001000a0003000000"),
            (80311, "030001000a0004000000"),
            (100393, "030001000a0005000000"),
            (120450, "030001000a0006000000"),
            (140517, "030001000a0007000000"),
            (160601, "030001000a0008000000"),
            (326832, "0b000100120000000000f769c11890026965"),
            (420397, "0a0001000e0009000000e164fbd8"),
        ];
        let mut t = MediaTracker::new();
        for (at, p) in PROBES {
            let p = hex(p);
            assert!(rtp_or_rtcp(&p).is_none());
            assert!(t.observe(p.len(), None, us(at)).is_none());
        }
    }

    #[test]
    fn sequence_wraparound_and_loss_are_tolerated() {
        let mut t = MediaTracker::new();
        let mut p = hex(G729);
        let mut seq = 0xfffeu16;
        for i in 0..6u64 {
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            let h = rtp_header(&p).unwrap();
            t.observe(p.len(), Some(&h), us(i * 20_000));
            seq = seq.wrapping_add(if i == 2 { 5 } else { 1 });
        }
        assert!(t.verdict().unwrap().rtp);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = rtp_header(&b);
            let _ = rtcp(&b);
            let _ = rtp_or_rtcp(&b);
        }

        #[test]
        fn random_version2_bytes_never_panic(
            b0 in 0x80u8..0xc0,
            b in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut p = vec![b0];
            p.extend_from_slice(&b);
            if let Some(h) = rtp_header(&p) {
                prop_assert!(h.header_len + h.payload_len <= p.len());
            }
            if let Some(i) = rtcp(&p) {
                prop_assert!(i.trailing < p.len());
            }
        }

        #[test]
        fn mutated_real_packets_never_panic(
            which in 0usize..7,
            muts in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let mut b = hex([PCMA, G729, SR_SDES, RR_SDES, SRTCP_LONG, DISCORD_SR, SNAP_FB][which]);
            for (i, v) in muts {
                let n = b.len();
                b[i % n] = v;
            }
            let n = b.len();
            b.truncate(cut % (n + 1));
            let _ = rtp_or_rtcp(&b);
            let _ = rtcp(&b);
        }

        #[test]
        fn tracker_never_panics(
            pkts in proptest::collection::vec(
                (any::<u16>(), any::<u64>(), proptest::option::of((any::<u8>(), any::<u16>(), any::<u32>(), any::<u32>()))),
                0..200,
            ),
        ) {
            let mut t = MediaTracker::new();
            for (len, at, rtp) in pkts {
                let h = rtp.map(|(pt, seq, ts, ssrc)| RtpHeader {
                    padding: false,
                    extension: false,
                    csrc_count: 0,
                    marker: false,
                    payload_type: pt & 0x7f,
                    sequence: seq,
                    timestamp: ts,
                    ssrc: ssrc % 8,
                    extension_profile: None,
                    header_len: 12,
                    payload_len: usize::from(len),
                });
                let _ = t.observe(usize::from(len), h.as_ref(), Instant::from_nanos(at));
            }
        }
    }
}
