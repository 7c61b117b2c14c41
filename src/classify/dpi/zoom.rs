//! Zoom's media encapsulation: what each datagram between a Zoom client
//! and a Zoom media router (UDP 8801-8810) carries. One connection holds
//! a meeting's audio, video and screen share, so this is read per packet:
//! audio can then be queued as voice while the video beside it is video.
//!
//! Layout (Michel et al., "Enabling Passive Measurement of Zoom
//! Performance in Production Networks", IMC 2022, and their Wireshark
//! dissector): an outer header of 8 bytes whose first byte is 5 for media,
//! then an inner header whose first byte is the media type: 15 audio, 16
//! video, 13 and 30 screen share, 33-35 RTCP.

/// Offset of the outer header's type.
const OUTER_TYPE: usize = 0;
/// The outer type of a media datagram.
const MEDIA: u8 = 5;
/// Offset of the inner (media) type.
const INNER_TYPE: usize = 8;
/// Shortest media datagram: both headers' types and an RTP header.
const MIN_LEN: usize = INNER_TYPE + 12;

/// What a Zoom media datagram carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoomMedia {
    /// Audio (and its RTCP).
    Audio,
    /// Camera video.
    Video,
    /// Screen share.
    Share,
}

/// What the Zoom media datagram `payload` carries, if it is one.
#[inline]
pub fn media(payload: &[u8]) -> Option<ZoomMedia> {
    if payload.len() < MIN_LEN || payload.get(OUTER_TYPE) != Some(&MEDIA) {
        return None;
    }
    match payload.get(INNER_TYPE)? {
        15 | 33..=35 => Some(ZoomMedia::Audio),
        16 => Some(ZoomMedia::Video),
        13 | 30 => Some(ZoomMedia::Share),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A media datagram of inner type `inner` with `len` bytes after the
    /// headers.
    pub(crate) fn datagram(inner: u8, len: usize) -> Vec<u8> {
        let mut p = vec![MEDIA, 0x00, 0x2a, 0, 0, 0, 0, 0];
        p.push(inner);
        p.extend([0u8; 11]);
        p.resize(p.len() + len, 0x3c);
        p
    }

    #[test]
    fn the_media_type_is_read() {
        assert_eq!(media(&datagram(15, 100)), Some(ZoomMedia::Audio));
        assert_eq!(media(&datagram(33, 40)), Some(ZoomMedia::Audio));
        assert_eq!(media(&datagram(16, 1000)), Some(ZoomMedia::Video));
        assert_eq!(media(&datagram(13, 800)), Some(ZoomMedia::Share));
        assert_eq!(media(&datagram(30, 800)), Some(ZoomMedia::Share));
        // Other types, another outer type, too short: not media.
        assert_eq!(media(&datagram(21, 100)), None);
        let mut other = datagram(15, 100);
        other[0] = 1;
        assert_eq!(media(&other), None);
        assert_eq!(media(&datagram(15, 0)[..MIN_LEN - 1]), None);
        assert_eq!(media(&[]), None);
    }
}
