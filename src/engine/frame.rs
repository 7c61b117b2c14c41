//! Frames in flight: owned buffers recycled through a pool, so the data path
//! allocates only while the pool grows to its working size.

use crate::config::Direction;
use crate::packet::{IpVersion, rewrite};
use crate::shaper::ShapedPacket;
use crate::wan::Probe;

/// A frame held by the engine between receive and transmit.
#[derive(Debug)]
pub struct Frame {
    buf: Box<[u8]>,
    /// Where the frame starts in `buf` (receive paths keep headroom).
    start: u32,
    len: u32,
    /// Offset of the IP header, when the frame is IP.
    ip: Option<(u16, IpVersion)>,
    /// The WAN-delay probe it carries to its departure, if it is timed.
    pub(crate) probe: Option<Probe>,
    /// Its LAN host's tag ([`host_tag`]), for host fairness.
    pub(crate) host: u32,
}

impl Frame {
    /// A frame holding a copy of `bytes` in `buf` (which must be large
    /// enough; longer frames are truncated and the caller counts them).
    pub fn new(mut buf: Box<[u8]>, bytes: &[u8]) -> Self {
        let n = bytes.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), bytes.get(..n)) {
            dst.copy_from_slice(src);
        }
        Frame {
            buf,
            start: 0,
            len: n as u32,
            ip: None,
            probe: None,
            host: 0,
        }
    }

    /// A frame a receive call wrote into `buf` at `start..start + len`.
    pub fn filled(buf: Box<[u8]>, start: usize, len: usize) -> Self {
        let start = start.min(buf.len());
        let len = len.min(buf.len() - start);
        Frame {
            buf,
            start: start as u32,
            len: len as u32,
            ip: None,
            probe: None,
            host: 0,
        }
    }

    /// The frame's bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        let (s, l) = (self.start as usize, self.len as usize);
        self.buf.get(s..s + l).unwrap_or_default()
    }

    /// The frame's bytes, mutable.
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let (s, l) = (self.start as usize, self.len as usize);
        self.buf.get_mut(s..s + l).unwrap_or_default()
    }

    /// Records where the IP header is (for ECN marking on dequeue).
    #[inline]
    pub fn set_ip(&mut self, offset: usize, version: IpVersion) {
        self.ip = u16::try_from(offset).ok().map(|o| (o, version));
    }

    /// Gives the buffer back (to a pool).
    pub fn into_buffer(self) -> Box<[u8]> {
        self.buf
    }
}

impl ShapedPacket for Frame {
    #[inline]
    fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    fn ecn_capable(&self) -> bool {
        match self.ip {
            Some((off, v)) => rewrite::ecn_capable(self.bytes(), usize::from(off), v),
            None => false,
        }
    }

    fn mark_ce(&mut self) -> bool {
        match self.ip {
            Some((off, v)) => rewrite::mark_ce(self.bytes_mut(), usize::from(off), v),
            None => false,
        }
    }

    #[inline]
    fn host(&self) -> u32 {
        self.host
    }
}

/// The LAN-side MAC address of a frame travelling `dir`: the source of an
/// upload, the destination of a download (all zero for a runt).
#[inline]
pub fn lan_mac(frame: &[u8], dir: Direction) -> [u8; 6] {
    let mac = match dir {
        Direction::Upload => frame.get(6..12),
        Direction::Download => frame.get(..6),
    };
    let mut out = [0u8; 6];
    if let Some(mac) = mac {
        out.copy_from_slice(mac);
    }
    out
}

/// The tag of the LAN host with MAC address `mac` on `vlan`, hashed, for
/// host fairness and the per-host counters. By MAC rather than IP, so that
/// one computer's IPv4 and IPv6 (privacy) addresses count as one host;
/// behind a LAN router every host is that router, which is all the gateway
/// can tell apart.
#[inline]
pub fn host_tag(mac: [u8; 6], vlan: Option<u16>) -> u32 {
    let mut key = [0u8; 8];
    if let Some(dst) = key.get_mut(..6) {
        dst.copy_from_slice(&mac);
    }
    let key = u64::from_le_bytes(key) | u64::from(vlan.map_or(0, |v| v | 0x8000)) << 48;
    // A multiply-xorshift mix: the shaper buckets the tag by its high bits.
    let mixed = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 32) as u32 ^ mixed as u32
}

/// A free list of equally sized frame buffers.
#[derive(Debug)]
pub struct FramePool {
    free: Vec<Box<[u8]>>,
    size: usize,
    /// Buffers ever allocated (the pool's working size).
    pub allocated: usize,
}

impl FramePool {
    /// A pool of buffers of `size` bytes, `prealloc` of them made now.
    pub fn new(size: usize, prealloc: usize) -> Self {
        let free = (0..prealloc)
            .map(|_| vec![0u8; size].into_boxed_slice())
            .collect();
        FramePool {
            free,
            size,
            allocated: prealloc,
        }
    }

    /// A buffer, from the free list or newly allocated.
    #[inline]
    pub fn get(&mut self) -> Box<[u8]> {
        match self.free.pop() {
            Some(b) => b,
            None => {
                self.allocated += 1;
                vec![0u8; self.size].into_boxed_slice()
            }
        }
    }

    /// Returns a buffer to the pool.
    #[inline]
    pub fn put(&mut self, buf: Box<[u8]>) {
        if buf.len() == self.size {
            self.free.push(buf);
        }
    }

    /// Buffer size.
    pub fn buffer_size(&self) -> usize {
        self.size
    }
}
