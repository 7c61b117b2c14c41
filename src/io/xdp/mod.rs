//! The AF_XDP receive path (`datapath.backend = "xdp"`): an XDP program on
//! the interface redirects every frame, before the kernel's stack sees it,
//! into an AF_XDP socket per receive queue, whose memory (the UMEM) qosd
//! maps; qosd copies each frame out and hands the chunk straight back.
//!
//! What it saves over AF_PACKET: the kernel no longer builds an skb for
//! each frame, runs it through its own stack (where a gateway without
//! addresses on the interface only drops it) and clones it for the packet
//! socket; in native mode (veth, most 10G+ NICs) it runs in the driver.
//! Zero-copy is used where the driver offers it, copy mode elsewhere.
//! Sending stays on AF_PACKET with `sendmmsg` (see `afpacket`): in copy
//! mode an AF_XDP transmit builds an skb per frame as well, so it would
//! cost as much.
//!
//! The sockets and rings come from `xdpilone` (pure Rust, no libbpf or
//! libxdp, no C tool chain); the program is loaded by `program`.
//!
//! A consequence an admin must know: the kernel's own stack no longer
//! receives anything on the interface, so an address configured on it
//! stops answering. `auto` therefore keeps to the `ring` backend on an
//! interface that has an address (see [`has_address`]).

pub mod bell;
pub mod program;

use std::io;
use std::num::NonZeroU32;
use std::os::fd::RawFd;
use std::ptr::NonNull;

use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, Socket, SocketConfig, Umem, UmemConfig, User};

pub use program::AttachMode;
use program::{Redirect, Step};

/// One UMEM chunk: a full Ethernet frame plus the kernel's headroom.
const FRAME_SIZE: u32 = 2048;
/// Chunks for all of an interface's queues together (8 MiB, as the ring
/// backend's receive ring)...
const TOTAL_FRAMES: u32 = 4096;
/// ...but at least this many per queue.
const MIN_QUEUE_FRAMES: u32 = 256;
/// More receive queues than this: ask the admin to reduce them.
pub const MAX_QUEUES: usize = 64;
/// The largest frame a chunk takes: the kernel keeps XDP_PACKET_HEADROOM
/// (256 bytes) in front of it in copy mode.
pub const MAX_XDP_FRAME: usize = FRAME_SIZE as usize - 256;
/// Received chunks are handed back to the kernel this many at a time.
const REFILL_BATCH: usize = 32;

/// Why the XDP backend cannot run on an interface.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// A system call failed.
    #[error("{what}: {source}")]
    Os {
        /// The step that failed.
        what: &'static str,
        /// The kernel's answer.
        source: io::Error,
    },
    /// The NIC strips VLAN tags before XDP sees the frames.
    #[error(
        "the NIC strips VLAN tags before XDP sees them, and they would be lost: \
         turn that off (ethtool -K {0} rxvlan off) to use AF_XDP"
    )]
    VlanStripping(String),
    /// Frames larger than a UMEM chunk takes.
    #[error(
        "frames up to {0} bytes do not fit AF_XDP's {MAX_XDP_FRAME}-byte chunks \
         (datapath.max_frame, or the interface MTU)"
    )]
    FrameTooLarge(usize),
    /// Too many receive queues for one socket each.
    #[error(
        "{0} receive queues (qosd opens one AF_XDP socket per queue, at most {MAX_QUEUES}); \
         reduce them with ethtool -L"
    )]
    TooManyQueues(usize),
}

fn os(what: &'static str, e: xdpilone::Errno) -> XdpError {
    XdpError::Os {
        what,
        source: io::Error::from_raw_os_error(e.get_raw().abs()),
    }
}

impl From<(Step, io::Error)> for XdpError {
    fn from((step, source): (Step, io::Error)) -> Self {
        XdpError::Os {
            what: step.as_str(),
            source,
        }
    }
}

/// Anonymous memory for one queue's UMEM.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: plain memory owned by this value; the kernel writes received
// frames into it, synchronised through the rings.
unsafe impl Send for Area {}

impl Area {
    fn new(len: usize) -> io::Result<Area> {
        // SAFETY: a fresh private anonymous mapping; page aligned, as the
        // UMEM must be.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Area { ptr, len })
    }

    /// `len` bytes at `offset`, if they lie within the area.
    fn get(&self, offset: u64, len: u32) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len as usize)?;
        if end > self.len {
            return None;
        }
        // SAFETY: [start, end) is within the mapping, which outlives
        // `&self`; the kernel does not write a chunk between handing it
        // over on the RX ring and getting it back on the fill ring.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), end - start) })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One receive queue's socket and rings. Field order is drop order: the
/// rings and socket go before the memory they point into.
struct Queue {
    rx: RingRx,
    fill: DeviceQueue,
    _user: User,
    _umem: Umem,
    /// Chunks read and copied out, waiting to go back on the fill ring.
    done: [u64; REFILL_BATCH],
    done_len: usize,
    /// Descriptors taken off the receive ring in one go, not read yet
    /// (the ring's slots are released at once; the chunks stay qosd's
    /// until they go back on the fill ring).
    pending: [XdpDesc; REFILL_BATCH],
    pending_at: usize,
    pending_len: usize,
    /// The last statistics read, to report differences.
    dropped_seen: u64,
    area: Area,
}

// SAFETY: the queue is used by one thread at a time (the data path's);
// xdpilone's rings are Send, the UMEM handle is a descriptor and an
// address range owned by `area`.
unsafe impl Send for Queue {}

impl Queue {
    fn open(ifindex: u32, queue: u32, frames: u32, zero_copy: bool) -> Result<Queue, XdpError> {
        let area =
            Area::new(frames as usize * FRAME_SIZE as usize).map_err(|source| XdpError::Os {
                what: "allocating the UMEM",
                source,
            })?;
        let config = UmemConfig {
            fill_size: frames,
            complete_size: 64,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        let slice = NonNull::slice_from_raw_parts(area.ptr, area.len);
        // SAFETY: the area is page aligned, `frames * FRAME_SIZE` long and
        // outlives the UMEM (dropped after it, see the field order).
        let umem = unsafe { Umem::new(config, slice) }
            .map_err(|e| os("registering the UMEM (XDP_UMEM_REG)", e))?;
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex)
            .map_err(|e| os("looking up the interface", e))?;
        info.set_queue(queue);
        let sock =
            Socket::with_shared(&info, &umem).map_err(|e| os("creating the AF_XDP socket", e))?;
        let mut fill = umem
            .fq_cq(&sock)
            .map_err(|e| os("setting up the fill ring", e))?;
        let mode = if zero_copy {
            SocketConfig::XDP_BIND_ZEROCOPY
        } else {
            SocketConfig::XDP_BIND_COPY
        };
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(frames),
                    tx_size: None,
                    bind_flags: mode | SocketConfig::XDP_BIND_NEED_WAKEUP,
                },
            )
            .map_err(|e| os("setting up the receive ring", e))?;
        let rx = user
            .map_rx()
            .map_err(|e| os("mapping the receive ring", e))?;
        umem.bind(&user).map_err(|e| {
            if e.get_raw().abs() == libc::EBUSY {
                os(
                    "binding the AF_XDP socket (another program's AF_XDP socket holds the queue)",
                    e,
                )
            } else {
                os("binding the AF_XDP socket", e)
            }
        })?;
        // Every chunk starts on the fill ring.
        {
            let mut w = fill.fill(frames);
            w.insert((0..frames).map(|i| u64::from(i) * u64::from(FRAME_SIZE)));
            w.commit();
        }
        Ok(Queue {
            rx,
            fill,
            _user: user,
            _umem: umem,
            done: [0; REFILL_BATCH],
            done_len: 0,
            pending: [XdpDesc::default(); REFILL_BATCH],
            pending_at: 0,
            pending_len: 0,
            dropped_seen: 0,
            area,
        })
    }

    /// Hands the chunks read so far back to the kernel.
    fn refill(&mut self) {
        if self.done_len == 0 {
            return;
        }
        let chunks = self.done.get(..self.done_len).unwrap_or_default();
        let n = {
            let mut w = self.fill.fill(chunks.len() as u32);
            let n = w.insert(chunks.iter().copied()) as usize;
            w.commit();
            n
        };
        // The fill ring holds every chunk, so it always has room; should
        // it not, the rest wait for the next call rather than leak.
        self.done.copy_within(n..self.done_len, 0);
        self.done_len -= n;
        if self.fill.needs_wakeup() {
            self.fill.wake();
        }
    }

    /// Copies the next frame into `out`: its length and the real length
    /// (more when `out` was too small), or None when the ring is empty.
    fn next_frame(&mut self, out: &mut [u8]) -> Option<(usize, usize)> {
        if self.pending_at == self.pending_len && !self.fetch() {
            return None;
        }
        let desc = *self.pending.get(self.pending_at)?;
        self.pending_at += 1;
        let real = desc.len as usize;
        let n = real.min(out.len());
        let copied = match (self.area.get(desc.addr, n as u32), out.get_mut(..n)) {
            (Some(src), Some(dst)) => {
                dst.copy_from_slice(src);
                n
            }
            // A descriptor outside the UMEM would be a kernel bug: an
            // empty frame, counted as cut, rather than a read past it.
            _ => 0,
        };
        let chunk = desc.addr - desc.addr % u64::from(FRAME_SIZE);
        // `fetch` took no more than `done` has room for.
        if let Some(slot) = self.done.get_mut(self.done_len) {
            *slot = chunk;
            self.done_len += 1;
        }
        Some((copied, real.max(copied)))
    }

    /// Takes up to a batch of descriptors off the receive ring, with one
    /// release of its slots; false when it is empty.
    fn fetch(&mut self) -> bool {
        if self.done_len == REFILL_BATCH {
            self.refill();
        }
        let room = REFILL_BATCH - self.done_len;
        let mut r = self.rx.receive(room as u32);
        let mut k = 0;
        for slot in self.pending.iter_mut().take(room) {
            let Some(d) = r.read() else { break };
            *slot = d;
            k += 1;
        }
        r.release();
        self.pending_at = 0;
        self.pending_len = k;
        k > 0
    }

    fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Frames the kernel dropped on this queue since the last call (no
    /// chunk on the fill ring, or the receive ring full).
    fn drops(&mut self) -> u64 {
        let Ok(s) = self.fill.statistics_v2() else {
            return 0;
        };
        let total = s.rx_dropped + s.rx_ring_full;
        let new = total.saturating_sub(self.dropped_seen);
        self.dropped_seen = total;
        new
    }
}

/// An interface's frames, received through AF_XDP. Field order is drop
/// order: the program is detached before the sockets close.
pub struct XdpRx {
    redirect: Redirect,
    /// The doorbell's positions, where the program has one.
    bell: Option<bell::BellRing>,
    /// Why there is none.
    no_bell: Option<String>,
    queues: Vec<Queue>,
    fds: Vec<RawFd>,
    /// The queue to look at first (round robin across calls).
    next: usize,
    zero_copy: bool,
}

impl XdpRx {
    /// Redirects every frame received on interface `name` (index
    /// `ifindex`) to qosd: one socket per receive queue, zero-copy where
    /// the driver can, the program in the driver where it can.
    pub fn open(name: &str, ifindex: u32, max_frame: usize) -> Result<XdpRx, XdpError> {
        if max_frame > MAX_XDP_FRAME {
            return Err(XdpError::FrameTooLarge(max_frame));
        }
        if crate::io::netdev::strips_vlan_in_hardware(name) {
            return Err(XdpError::VlanStripping(name.to_owned()));
        }
        let queues = rx_queues(name);
        if queues > MAX_QUEUES {
            return Err(XdpError::TooManyQueues(queues));
        }
        let per_queue = (TOTAL_FRAMES / queues as u32)
            .max(MIN_QUEUE_FRAMES)
            .next_power_of_two();
        // The program goes on first, with its map still empty: until a
        // queue's socket is in the map its frames pass to the kernel (and
        // to the bypass bridge, if any), so nothing is lost, and the
        // sockets are built once, for the mode that attached. Native
        // first: generic XDP runs after the skb is built, where it saves
        // less, and zero-copy needs native.
        let mut redirect = Redirect::load(queues as u32)?;
        redirect.attach(ifindex, &[AttachMode::Native, AttachMode::Generic])?;
        let native = redirect.mode() == Some(AttachMode::Native);
        let attempt = |zero_copy| {
            open_queues(&redirect, ifindex, queues, per_queue, zero_copy).map(|qs| (qs, zero_copy))
        };
        let (queues, zero_copy) = match native.then(|| attempt(true)) {
            Some(Ok(done)) => done,
            _ => attempt(false)?,
        };
        let fds = queues.iter().map(Queue::fd).collect();
        // Without the mapping the doorbell cannot be heard: no keys go into
        // its map then, so it never rings.
        let (bell, no_bell) = match redirect.bell().map(|b| bell::BellRing::map(b.ring_fd())) {
            Some(Ok(ring)) => (Some(ring), None),
            Some(Err(e)) => (None, Some(format!("mapping its ring buffer: {e}"))),
            None => (None, redirect.no_bell().map(|e| e.to_string())),
        };
        Ok(XdpRx {
            redirect,
            bell,
            no_bell,
            queues,
            fds,
            next: 0,
            zero_copy,
        })
    }

    /// Whether frames taken off a receive ring wait to be read.
    pub fn has_pending(&self) -> bool {
        self.queues.iter().any(|q| q.pending_at < q.pending_len)
    }

    /// The sockets, for `poll` (one per receive queue).
    pub fn fds(&self) -> &[RawFd] {
        &self.fds
    }

    /// How the frames arrive: "native" or "generic", and whether zero-copy.
    pub fn describe(&self) -> (&'static str, bool) {
        (
            self.redirect.mode().map_or("none", AttachMode::as_str),
            self.zero_copy,
        )
    }

    /// Copies the next frame into `out`, one queue after the other:
    /// `Some((copied, real_len))`, where a `real_len` above `copied` means
    /// the frame was cut. None when every queue is empty; the chunks read
    /// so far are then handed back to the kernel.
    pub fn recv(&mut self, out: &mut [u8]) -> Option<(usize, usize)> {
        let n = self.queues.len();
        for i in 0..n {
            let at = (self.next + i) % n;
            if let Some(q) = self.queues.get_mut(at)
                && let Some(got) = q.next_frame(out)
            {
                // The next call starts at the next queue: a queue that is
                // never empty must not starve the others.
                self.next = (at + 1) % n;
                return Some(got);
            }
        }
        for q in &mut self.queues {
            q.refill();
        }
        None
    }

    /// The doorbell's descriptor, for `poll`: readable once a frame of a
    /// flow given to [`XdpRx::set_bell`] arrived. None without a doorbell.
    pub fn bell_fd(&self) -> Option<RawFd> {
        self.bell.as_ref()?;
        self.redirect.bell().map(program::BellMaps::ring_fd)
    }

    /// Why there is no doorbell, if there is none.
    pub fn no_bell(&self) -> Option<&str> {
        self.no_bell.as_deref()
    }

    /// How many frames rang the doorbell since the last call (they are in
    /// the sockets, or about to be: the kernel rings before it hands the
    /// frame over).
    pub fn drain_bell(&mut self) -> u64 {
        self.bell.as_mut().map_or(0, bell::BellRing::drain)
    }

    /// Makes the frames of the flow with `key` ring the doorbell (`on`), or
    /// no longer.
    pub fn set_bell(&self, key: &crate::packet::bell::BellKey, on: bool) -> io::Result<()> {
        match (self.redirect.bell(), &self.bell) {
            (Some(b), Some(_)) => b.set(key, on),
            _ => Err(io::Error::from(io::ErrorKind::Unsupported)),
        }
    }

    /// Frames the kernel dropped since the last call because qosd did not
    /// keep up.
    pub fn kernel_drops(&mut self) -> u64 {
        self.queues.iter_mut().map(Queue::drops).sum()
    }
}

fn open_queues(
    redirect: &Redirect,
    ifindex: u32,
    queues: usize,
    frames: u32,
    zero_copy: bool,
) -> Result<Vec<Queue>, XdpError> {
    let mut out = Vec::with_capacity(queues);
    for q in 0..queues as u32 {
        let queue = Queue::open(ifindex, q, frames, zero_copy)?;
        redirect.set_socket(q, queue.fd())?;
        out.push(queue);
    }
    Ok(out)
}

/// The interface's receive queues (`/sys/class/net/NAME/queues/rx-*`), 1
/// when that cannot be read.
pub fn rx_queues(name: &str) -> usize {
    std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(1)
        .max(1)
}

/// Whether the kernel's stack uses interface `name` for an address of its
/// own (IPv4, or IPv6 other than link-local): with the XDP backend that
/// address would stop answering.
pub fn has_address(name: &str) -> bool {
    // An address on a VLAN or macvlan device on top of the interface
    // arrives through it as well.
    let uppers: Vec<String> = std::fs::read_dir(format!("/sys/class/net/{name}"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_prefix("upper_").map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    own_address(name) || uppers.iter().any(|u| own_address(u))
}

/// Whether interface `name` itself carries an address (see [`has_address`]).
fn own_address(name: &str) -> bool {
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list we free below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return false;
    }
    let mut found = false;
    let mut p = ifap;
    while !p.is_null() {
        // SAFETY: `p` walks the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a NUL-terminated name from getifaddrs.
        let ifname = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if ifname.to_bytes() != name.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr points at a sockaddr of its family's size.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if family == libc::AF_INET {
            found = true;
        } else if family == libc::AF_INET6 {
            // SAFETY: an AF_INET6 address is a sockaddr_in6.
            let a = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
            let b = a.sin6_addr.s6_addr;
            let link_local = b.first() == Some(&0xfe) && b.get(1).is_some_and(|x| x & 0xc0 == 0x80);
            found |= !link_local;
        }
    }
    // SAFETY: frees the list getifaddrs allocated.
    unsafe { libc::freeifaddrs(ifap) };
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_larger_than_a_chunk_refuse_before_anything_is_set_up() {
        // Checked first, so no privilege or interface is needed to see it.
        let err = XdpRx::open("qosd-no-such-if", 0, MAX_XDP_FRAME + 1).err();
        assert!(
            matches!(err, Some(XdpError::FrameTooLarge(n)) if n == MAX_XDP_FRAME + 1),
            "{err:?}"
        );
        assert_eq!(MAX_XDP_FRAME, 1792);
    }

    #[test]
    fn loopback_has_an_address_and_a_missing_interface_none() {
        // Every network namespace has lo with 127.0.0.1 once it is up;
        // a test namespace may keep it down, so only the negative case is
        // certain.
        assert!(!has_address("qosd-no-such-if"));
        assert_eq!(rx_queues("qosd-no-such-if"), 1);
    }
}
