//! Raw frames on a network interface through an AF_PACKET socket.
//!
//! qosd creates the socket itself so that it can set, before anything is
//! received: PACKET_IGNORE_OUTGOING (otherwise every frame qosd sends comes
//! back on its own receive path), PACKET_AUXDATA (the kernel strips VLAN
//! tags into metadata and flags frames whose TCP/UDP checksum a local sender
//! left to offload), and large socket buffers. pnet then binds it to the
//! interface, enables promiscuous mode and provides the sender. Receiving
//! uses `recvmsg` directly, because pnet's receiver can deliver neither
//! the auxiliary data nor a timeout that changes from call to call.

use std::io;
use std::mem;
use std::os::fd::RawFd;

use pnet_datalink::{
    Channel, Config as PnetConfig, DataLinkReceiver, DataLinkSender, NetworkInterface,
};

use super::ring::RxRing;
use crate::packet::rewrite;

/// Why an interface could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No interface of that name.
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    /// A socket call failed.
    #[error("interface {name}: {what}: {source}")]
    Socket {
        /// Interface.
        name: String,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// Socket settings.
#[derive(Debug, Clone, Copy)]
pub struct SocketOptions {
    /// Receive buffer in bytes (the kernel queue in front of qosd).
    pub rcvbuf: usize,
    /// Send buffer in bytes.
    pub sndbuf: usize,
    /// How frames move: pnet's sender and `recvmsg` per frame, or a
    /// TPACKET_V2 receive ring and batched `sendmmsg`.
    pub backend: Backend,
}

pub use crate::config::Backend;

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            rcvbuf: 4 << 20,
            sndbuf: 1 << 20,
            backend: Backend::Pnet,
        }
    }
}

/// What [`AfPacket::recv`] received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Offset of the frame in the buffer.
    pub start: usize,
    /// Frame length (a stripped VLAN tag re-inserted).
    pub len: usize,
    /// The frame was longer than the buffer and was cut: do not forward.
    pub truncated: bool,
    /// Its TCP/UDP checksum was partial and qosd completed it.
    pub checksum_completed: bool,
}

/// Bytes kept free at the start of each receive buffer so a VLAN tag the
/// kernel stripped can be put back without moving the frame.
pub const HEADROOM: usize = 4;

/// Puts a VLAN tag the kernel stripped back into a frame received at
/// `buf[HEADROOM..HEADROOM + len]`, and completes a partial checksum.
/// Returns the frame's start, length and whether a checksum was completed.
fn finish(
    buf: &mut [u8],
    mut len: usize,
    status: u32,
    tci: u16,
    tpid: u16,
) -> (usize, usize, bool) {
    let mut start = HEADROOM;
    if status & libc::TP_STATUS_VLAN_VALID != 0 && len >= 12 {
        // Put the stripped 802.1Q tag back in front of the EtherType.
        let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 && tpid != 0 {
            tpid
        } else {
            0x8100
        };
        buf.copy_within(HEADROOM..HEADROOM + 12, 0);
        let [t0, t1] = tpid.to_be_bytes();
        let [c0, c1] = tci.to_be_bytes();
        if let Some(tag) = buf.get_mut(12..16) {
            tag.copy_from_slice(&[t0, t1, c0, c1]);
        }
        start = 0;
        len += 4;
    }
    let mut completed = false;
    if status & libc::TP_STATUS_CSUMNOTREADY != 0 {
        // A local sender's partial checksum: finish it, as the NIC would
        // have, or the receiver drops the frame.
        if let Some(frame) = buf.get_mut(start..start + len) {
            completed = rewrite::complete_l4_checksum(frame);
        }
    }
    (start, len, completed)
}

/// One interface's raw socket.
pub struct AfPacket {
    name: String,
    fd: RawFd,
    ring: Option<RxRing>,
    tx: Box<dyn DataLinkSender>,
    // Keeps pnet's half of the descriptor alive (the fd closes when both
    // halves are dropped).
    _rx: Box<dyn DataLinkReceiver>,
}

fn os_err(name: &str, what: &'static str) -> OpenError {
    OpenError::Socket {
        name: name.to_owned(),
        what,
        source: io::Error::last_os_error(),
    }
}

fn set_int(fd: RawFd, level: i32, opt: i32, value: i32) -> bool {
    // SAFETY: setsockopt reads `size_of::<i32>()` bytes from a valid i32.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&value as *const i32).cast(),
            mem::size_of::<i32>() as libc::socklen_t,
        ) == 0
    }
}

/// The interface named `name`, from pnet's list.
pub fn find_interface(name: &str) -> Option<NetworkInterface> {
    pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
}

impl AfPacket {
    /// Opens `name` for raw frames in and out.
    pub fn open(name: &str, opts: SocketOptions) -> Result<Self, OpenError> {
        let iface =
            find_interface(name).ok_or_else(|| OpenError::NoSuchInterface(name.to_owned()))?;
        // Protocol 0: receive nothing until pnet binds with ETH_P_ALL to
        // this interface, so no frame of another interface slips in.
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(os_err(name, "socket(AF_PACKET)"));
        }
        let close = |e: OpenError| {
            // SAFETY: fd is ours and not yet handed to pnet.
            unsafe { libc::close(fd) };
            e
        };
        if !set_int(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1) {
            return Err(close(os_err(
                name,
                "PACKET_IGNORE_OUTGOING (needs Linux 4.20)",
            )));
        }
        if !set_int(fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, 1) {
            return Err(close(os_err(name, "PACKET_AUXDATA")));
        }
        // Larger than the default; FORCE variants need CAP_NET_ADMIN and
        // fall back to the sysctl-limited ones.
        let rcv = i32::try_from(opts.rcvbuf).unwrap_or(i32::MAX);
        let snd = i32::try_from(opts.sndbuf).unwrap_or(i32::MAX);
        if !set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcv) {
            let _ = set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, rcv);
        }
        if !set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, snd) {
            let _ = set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, snd);
        }
        let config = PnetConfig {
            write_buffer_size: 65_536,
            read_buffer_size: 65_536,
            promiscuous: true,
            socket_fd: Some(fd),
            // Never block the data path on a full interface queue: a send
            // that cannot go now fails and is counted.
            write_timeout: Some(std::time::Duration::ZERO),
            ..PnetConfig::default()
        };
        let (tx, rx) = match pnet_datalink::channel(&iface, config) {
            Ok(Channel::Ethernet(tx, rx)) => (tx, rx),
            Ok(_) => {
                return Err(OpenError::Socket {
                    name: name.to_owned(),
                    what: "pnet channel",
                    source: io::Error::other("not an Ethernet channel"),
                });
            }
            // pnet closed the descriptor on failure.
            Err(source) => {
                return Err(OpenError::Socket {
                    name: name.to_owned(),
                    what: "bind/promiscuous",
                    source,
                });
            }
        };
        let ring = match opts.backend {
            Backend::Pnet => None,
            Backend::Ring => Some(RxRing::new(fd).map_err(|source| OpenError::Socket {
                name: name.to_owned(),
                what: "TPACKET_V2 receive ring",
                source,
            })?),
        };
        Ok(AfPacket {
            name: name.to_owned(),
            fd,
            ring,
            tx,
            _rx: rx,
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The socket, for `poll`.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Splits the socket into its receiving and sending halves, for two
    /// threads (each direction receives on one interface and sends on the
    /// other).
    pub fn split(self) -> (RxSocket, TxSocket) {
        let batch_fd = self.ring.is_some().then_some(self.fd);
        (
            RxSocket {
                name: self.name.clone(),
                fd: self.fd,
                ring: self.ring,
                _rx: self._rx,
            },
            TxSocket {
                name: self.name,
                tx: self.tx,
                batch_fd,
            },
        )
    }
}

/// The receiving half of an [`AfPacket`].
pub struct RxSocket {
    name: String,
    fd: RawFd,
    ring: Option<RxRing>,
    _rx: Box<dyn DataLinkReceiver>,
}

/// The sending half of an [`AfPacket`].
pub struct TxSocket {
    name: String,
    tx: Box<dyn DataLinkSender>,
    /// With the ring backend: send batches with `sendmmsg` on this socket.
    batch_fd: Option<RawFd>,
}

/// Most frames one `sendmmsg` carries.
pub const TX_BATCH: usize = 64;

impl TxSocket {
    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends up to [`TX_BATCH`] frames; `sent[i]` tells whether frame `i`
    /// went out. One system call with the ring backend, one per frame
    /// through pnet otherwise.
    pub fn send_batch(&mut self, frames: &[&[u8]], sent: &mut [bool; TX_BATCH]) {
        let n = frames.len().min(TX_BATCH);
        let Some(fd) = self.batch_fd else {
            for (ok, f) in sent.iter_mut().zip(frames.iter().take(n)) {
                *ok = self.send(f).is_ok();
            }
            return;
        };
        // SAFETY: plain data, filled below.
        let mut iov: [libc::iovec; TX_BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; TX_BATCH] = unsafe { std::mem::zeroed() };
        for (i, f) in frames.iter().take(n).enumerate() {
            if let (Some(v), Some(m)) = (iov.get_mut(i), msgs.get_mut(i)) {
                v.iov_base = f.as_ptr() as *mut libc::c_void;
                v.iov_len = f.len();
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
            }
        }
        let mut done = 0usize;
        while done < n {
            // SAFETY: msgs[done..n] point at iovecs and frames alive for the
            // call; the socket is bound, so no address is needed.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs.as_mut_ptr().add(done),
                    (n - done) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc <= 0 {
                // The first remaining frame failed: count it and go on.
                if let Some(ok) = sent.get_mut(done) {
                    *ok = false;
                }
                done += 1;
                continue;
            }
            for ok in sent.iter_mut().skip(done).take(rc as usize) {
                *ok = true;
            }
            done += rc as usize;
        }
    }

    /// Sends one frame. `WouldBlock`/`TimedOut` mean the interface's queue
    /// is full.
    pub fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        match self.tx.send_to(frame, None) {
            Some(r) => r,
            None => Err(io::Error::other("frame larger than the send buffer")),
        }
    }
}

impl RxSocket {
    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The socket, for `poll`.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Frames the kernel dropped because this socket's receive queue was
    /// full, since the last call (reading resets the kernel's counter).
    pub fn kernel_drops(&self) -> u64 {
        let mut st = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: PACKET_STATISTICS writes a tpacket_stats into `st`.
        let rc = unsafe {
            libc::getsockopt(
                self.fd,
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if rc == 0 { u64::from(st.tp_drops) } else { 0 }
    }

    /// Receives one frame into `buf` without blocking: `Ok(None)` when
    /// nothing is waiting. With the ring backend the frame is copied out of
    /// the ring; otherwise it is one `recvmsg`. The frame starts at [`Received::start`]; `buf`
    /// must be at least [`HEADROOM`] plus the largest frame long.
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        if let Some(ring) = self.ring.as_mut() {
            let Some(f) = ring.next_frame() else {
                return Ok(None);
            };
            let room = buf.len().saturating_sub(HEADROOM);
            let truncated = f.len > f.data.len() || f.data.len() > room;
            let n = f.data.len().min(room);
            if let (Some(dst), Some(src)) = (buf.get_mut(HEADROOM..HEADROOM + n), f.data.get(..n)) {
                dst.copy_from_slice(src);
            }
            let (status, tci, tpid) = (f.status, f.vlan_tci, f.vlan_tpid);
            if truncated {
                return Ok(Some(Received {
                    start: HEADROOM,
                    len: n,
                    truncated,
                    checksum_completed: false,
                }));
            }
            let (start, len, checksum_completed) = finish(buf, n, status, tci, tpid);
            return Ok(Some(Received {
                start,
                len,
                truncated,
                checksum_completed,
            }));
        }
        let Some(space) = buf.get_mut(HEADROOM..) else {
            return Err(io::Error::other("receive buffer too small"));
        };
        let mut iov = libc::iovec {
            iov_base: space.as_mut_ptr().cast(),
            iov_len: space.len(),
        };
        // Room for one tpacket_auxdata control message.
        let mut cmsg_buf = [0u64; 8];
        // SAFETY: msghdr is plain data; all pointers set below are valid for
        // the call's duration.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg_buf.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of_val(&cmsg_buf);
        // SAFETY: valid fd and msghdr; MSG_TRUNC makes the return value the
        // real frame length even when it did not fit.
        let n = unsafe { libc::recvmsg(self.fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_TRUNC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        let real_len = n as usize;
        let truncated = real_len > space.len() || msg.msg_flags & libc::MSG_TRUNC != 0;
        let len = real_len.min(space.len());
        let mut aux: Option<libc::tpacket_auxdata> = None;
        // SAFETY: walking the control messages the kernel wrote into
        // cmsg_buf, bounded by msg_controllen.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                    aux = Some(std::ptr::read_unaligned(
                        libc::CMSG_DATA(c).cast::<libc::tpacket_auxdata>(),
                    ));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let (start, len, checksum_completed) = match aux {
            Some(a) if !truncated => finish(buf, len, a.tp_status, a.tp_vlan_tci, a.tp_vlan_tpid),
            _ => (HEADROOM, len, false),
        };
        Ok(Some(Received {
            start,
            len,
            truncated,
            checksum_completed,
        }))
    }
}
