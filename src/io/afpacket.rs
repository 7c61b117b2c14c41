//! Raw frames on a network interface through AF_PACKET sockets: one for
//! receiving ([`RxSocket`]) and one for sending ([`TxSocket`]) per
//! interface and direction, so each direction of the data path owns, and
//! can re-open, exactly the sockets it uses.
//!
//! qosd creates the receiving socket itself so that it can set, before
//! anything is received: PACKET_IGNORE_OUTGOING (otherwise every frame qosd
//! sends comes back on its own receive path), PACKET_AUXDATA (the kernel
//! strips VLAN tags into metadata and flags frames whose TCP/UDP checksum a
//! local sender left to offload), and a large buffer. pnet then binds it to
//! the interface and enables promiscuous mode. Receiving uses `recvmsg` (or
//! the TPACKET ring) directly, because pnet's receiver can deliver neither
//! the auxiliary data nor a timeout that changes from call to call. The
//! sending socket is bound with protocol 0, so it receives nothing.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

use pnet_datalink::{
    Channel, Config as PnetConfig, DataLinkReceiver, DataLinkSender, NetworkInterface,
};

use super::ring::RxRing;
use super::xdp::{self, XdpError, XdpRx};
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
    /// `datapath.backend = "xdp"` and the kernel or driver cannot.
    #[error(
        "interface {name}: AF_XDP: {source} (datapath.backend = \"auto\" falls back to \"ring\")"
    )]
    Xdp {
        /// Interface.
        name: String,
        /// What failed.
        source: XdpError,
    },
}

/// Socket settings.
#[derive(Debug, Clone, Copy)]
pub struct SocketOptions {
    /// Receive buffer in bytes (the kernel queue in front of qosd).
    pub rcvbuf: usize,
    /// Send buffer in bytes.
    pub sndbuf: usize,
    /// How frames move: one `recvmsg` and one `send` per frame, a
    /// TPACKET_V2 receive ring or AF_XDP, and batched `sendmmsg`; `Auto`
    /// picks the fastest that opens.
    pub backend: Backend,
    /// The largest frame to forward (AF_XDP refuses an interface whose
    /// frames would not fit its chunks).
    pub max_frame: usize,
}

pub use crate::config::Backend;

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            rcvbuf: 4 << 20,
            sndbuf: 1 << 20,
            backend: Backend::Auto,
            max_frame: 1522,
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

/// The receiving socket of one interface.
///
/// Each direction of the data path has its own receiving socket on its
/// ingress interface and its own sending socket on its egress interface,
/// so a direction can re-open its sockets when an interface is re-created
/// without touching the other direction's.
pub struct RxSocket {
    name: String,
    ifindex: u32,
    fd: RawFd,
    ring: Option<RxRing>,
    xdp: Option<XdpRx>,
    /// What to `poll` for arrivals: the packet socket, or the AF_XDP
    /// sockets and the packet socket (which then only reports errors).
    poll_fds: Vec<RawFd>,
    // Keep pnet's halves of the descriptor alive (the fd closes when both
    // are dropped).
    _pnet: (Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>),
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

/// Sets the socket buffer `opt`/`force_opt` to `bytes`: the FORCE variant
/// needs CAP_NET_ADMIN and falls back to the sysctl-limited one.
fn set_buffer(fd: RawFd, force_opt: i32, opt: i32, bytes: usize) {
    let v = i32::try_from(bytes).unwrap_or(i32::MAX);
    if !set_int(fd, libc::SOL_SOCKET, force_opt, v) {
        let _ = set_int(fd, libc::SOL_SOCKET, opt, v);
    }
}

/// A new AF_PACKET socket that receives nothing (protocol 0) until bound.
fn packet_socket(name: &str) -> Result<OwnedFd, OpenError> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os_err(name, "socket(AF_PACKET)"));
    }
    // SAFETY: a descriptor we just created and own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The interface named `name`, from pnet's list.
pub fn find_interface(name: &str) -> Option<NetworkInterface> {
    pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
}

impl RxSocket {
    /// Opens `name` for receiving every frame (promiscuous), with
    /// `opts.backend`; `Auto` tries AF_XDP, then the ring, then pnet, and
    /// logs what it chose and why.
    pub fn open(name: &str, opts: SocketOptions) -> Result<Self, OpenError> {
        if opts.backend != Backend::Auto {
            return Self::open_with(name, opts.backend, opts);
        }
        if xdp::has_address(name) {
            tracing::info!(
                interface = name,
                "datapath backend ring: the interface has an address of this host's, which \
                 AF_XDP would take from the kernel"
            );
        } else {
            match Self::open_with(name, Backend::Xdp, opts) {
                Ok(s) => return Ok(s),
                Err(e) => tracing::warn!(
                    interface = name,
                    "datapath backend ring: AF_XDP is not available: {e}"
                ),
            }
        }
        match Self::open_with(name, Backend::Ring, opts) {
            Ok(s) => Ok(s),
            Err(e @ OpenError::NoSuchInterface(_)) => Err(e),
            Err(e) => {
                tracing::warn!(
                    interface = name,
                    "datapath backend pnet: the receive ring is not available: {e}"
                );
                Self::open_with(name, Backend::Pnet, opts)
            }
        }
    }

    /// Opens `name` with exactly `backend` (not `Auto`).
    fn open_with(name: &str, backend: Backend, opts: SocketOptions) -> Result<Self, OpenError> {
        let iface =
            find_interface(name).ok_or_else(|| OpenError::NoSuchInterface(name.to_owned()))?;
        // Protocol 0: receive nothing until pnet binds with ETH_P_ALL to
        // this interface, so no frame of another interface slips in.
        let owned = packet_socket(name)?;
        let fd = owned.as_raw_fd();
        if !set_int(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1) {
            return Err(os_err(name, "PACKET_IGNORE_OUTGOING (needs Linux 4.20)"));
        }
        if !set_int(fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, 1) {
            return Err(os_err(name, "PACKET_AUXDATA"));
        }
        if backend == Backend::Xdp {
            // Frames reach qosd through AF_XDP; this socket only keeps
            // the interface promiscuous and reports errors, so it takes
            // nothing (a filter that accepts no frame).
            drop_everything(fd).map_err(|source| OpenError::Socket {
                name: name.to_owned(),
                what: "SO_ATTACH_FILTER",
                source,
            })?;
        } else {
            set_buffer(fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, opts.rcvbuf);
        }
        // The ring before the bind: setting up a ring on a bound socket
        // detaches it from the interface and re-attaches it, and that
        // dance races with the interface coming up (seen in the soak: a
        // socket re-opened on a re-created interface received nothing).
        // Unbound (protocol 0), there is nothing to detach.
        let ring = match backend {
            Backend::Pnet | Backend::Xdp | Backend::Auto => None,
            Backend::Ring => Some(RxRing::new(fd).map_err(|source| OpenError::Socket {
                name: name.to_owned(),
                what: "TPACKET_V2 receive ring",
                source,
            })?),
        };
        let config = PnetConfig {
            write_buffer_size: 65_536,
            read_buffer_size: 65_536,
            promiscuous: true,
            socket_fd: Some(owned.into_raw_fd()),
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
            // pnet closed the descriptor on failure (and `ring`, dropped
            // here, unmaps what it mapped).
            Err(source) => {
                return Err(OpenError::Socket {
                    name: name.to_owned(),
                    what: "bind/promiscuous",
                    source,
                });
            }
        };
        // The program goes on last: from then on the kernel's stack no
        // longer sees the interface's frames.
        let xdp = match backend {
            Backend::Xdp => Some(XdpRx::open(name, iface.index, opts.max_frame).map_err(
                |source| OpenError::Xdp {
                    name: name.to_owned(),
                    source,
                },
            )?),
            _ => None,
        };
        let mut poll_fds: Vec<RawFd> = xdp.as_ref().map(|x| x.fds().to_vec()).unwrap_or_default();
        poll_fds.push(fd);
        if let Some(x) = &xdp {
            let (mode, zero_copy) = x.describe();
            tracing::info!(
                interface = name,
                queues = x.fds().len(),
                "datapath backend xdp: {mode} mode, {}",
                if zero_copy { "zero-copy" } else { "copy" }
            );
            if let Some(why) = x.no_bell() {
                tracing::warn!(
                    interface = name,
                    "no doorbell for voice frames ({why}): a call keeps the data path waking                      at every departure around its frames, which costs more CPU"
                );
            }
        }
        Ok(RxSocket {
            name: name.to_owned(),
            ifindex: iface.index,
            fd,
            ring,
            xdp,
            poll_fds,
            _pnet: (tx, rx),
        })
    }

    /// The backend in use: `Pnet`, `Ring` or `Xdp`.
    pub fn backend(&self) -> Backend {
        match (&self.xdp, &self.ring) {
            (Some(_), _) => Backend::Xdp,
            (None, Some(_)) => Backend::Ring,
            (None, None) => Backend::Pnet,
        }
    }

    /// Frames already taken off the kernel's ring and not yet read: the
    /// thread must not sleep on `poll` while there are any (`poll` only
    /// reports what is still in the kernel's ring).
    pub fn has_pending(&self) -> bool {
        self.xdp.as_ref().is_some_and(XdpRx::has_pending)
    }

    /// The doorbell (AF_XDP only): a descriptor `poll` reports readable
    /// when a frame of a flow given to [`RxSocket::set_bell`] arrived.
    pub fn bell_fd(&self) -> Option<RawFd> {
        self.xdp.as_ref().and_then(XdpRx::bell_fd)
    }

    /// How many frames rang the doorbell since the last call.
    pub fn drain_bell(&mut self) -> u64 {
        self.xdp.as_mut().map_or(0, XdpRx::drain_bell)
    }

    /// Makes the frames of the flow with `key` ring the doorbell, or no
    /// longer (`on` false); an error where there is no doorbell.
    pub fn set_bell(&self, key: &crate::packet::bell::BellKey, on: bool) -> io::Result<()> {
        match &self.xdp {
            Some(x) => x.set_bell(key, on),
            None => Err(io::Error::from(io::ErrorKind::Unsupported)),
        }
    }

    /// Whether the kernel's stack and any bridge still see the frames this
    /// socket receives (it gets copies): not with AF_XDP, which takes them.
    pub fn receives_copies(&self) -> bool {
        self.xdp.is_none()
    }

    /// The index of the interface the socket is bound to (a re-created
    /// interface of the same name has another).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The descriptors to `poll` for arrivals and errors.
    pub fn poll_fds(&self) -> &[RawFd] {
        &self.poll_fds
    }

    /// Takes the socket's pending error, if any. The kernel sets one
    /// (ENETDOWN) when the interface goes down, and `poll` reports POLLERR
    /// until it is read: the ring backend never calls `recvmsg`, which
    /// would read it, so without this a thread woke at once forever after
    /// an interface was set down and up (100% of a core, seen in the lab).
    pub fn take_error(&self) -> Option<io::Error> {
        // Every socket's error is read (and so cleared), not just the first.
        self.poll_fds
            .iter()
            .filter_map(|&fd| socket_error(fd))
            .fold(None, |first, e| first.or(Some(e)))
    }

    /// Frames the kernel dropped because this socket's receive queue was
    /// full, since the last call (reading resets the kernel's counter).
    pub fn kernel_drops(&mut self) -> u64 {
        if let Some(x) = self.xdp.as_mut() {
            return x.kernel_drops();
        }
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
        if let Some(x) = self.xdp.as_mut() {
            let Some(space) = buf.get_mut(HEADROOM..) else {
                return Err(io::Error::other("receive buffer too small"));
            };
            // XDP sees the frame as it came off the wire: tags in place,
            // checksums complete (no local sender's offload).
            return Ok(x.recv(space).map(|(len, real)| Received {
                start: HEADROOM,
                len,
                truncated: real > len,
                checksum_completed: false,
            }));
        }
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

/// A socket's pending error (SO_ERROR), which reading clears.
fn socket_error(fd: RawFd) -> Option<io::Error> {
    let mut err: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_ERROR writes an int into `err`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0 && err != 0).then(|| io::Error::from_raw_os_error(err))
}

/// Attaches a classic BPF filter that accepts no frame (`ret #0`).
fn drop_everything(fd: RawFd) -> io::Result<()> {
    let mut code = [libc::sock_filter {
        code: 0x06, // BPF_RET | BPF_K
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: passes a valid sock_fprog whose filter outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Most frames one `sendmmsg` carries.
pub const TX_BATCH: usize = 64;

/// Longest one batch waits, in all, for a full send queue to drain before
/// the frames still waiting are given up (and counted).
const TX_WAIT_BUDGET: Duration = Duration::from_millis(2);
/// Longest one wait for the queue to drain: short, so a queue that drains
/// is used again at once.
const TX_WAIT_STEP: Duration = Duration::from_micros(200);
/// Pause after ENOBUFS: the device's queue, not the socket, was full, so
/// the socket polls writable at once and only time helps.
const TX_NOBUFS_PAUSE: Duration = Duration::from_micros(50);

/// What became of one frame handed to [`TxSocket::send_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxOutcome {
    /// Handed to the interface.
    #[default]
    Sent,
    /// The send queue stayed full for the whole wait budget: dropped.
    QueueFull,
    /// The interface is down or gone: dropped.
    LinkDown,
    /// Refused for another reason (too large for the interface...):
    /// dropped.
    Refused,
}

/// How a failed send is handled.
enum SendError {
    /// The socket's send buffer is full: wait until it is writable.
    Busy,
    /// The device's queue is full: wait a moment.
    NoBufs,
    /// The interface is down or gone.
    LinkDown,
    /// Anything else: this frame is refused.
    Refused,
}

fn send_error(e: &io::Error) -> SendError {
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::EINTR) => SendError::Busy,
        Some(libc::ENOBUFS) => SendError::NoBufs,
        Some(libc::ENETDOWN | libc::ENXIO | libc::ENODEV) => SendError::LinkDown,
        _ => SendError::Refused,
    }
}

/// The sending socket of one interface: bound to it with protocol 0, so
/// it receives nothing (the receiving socket of that interface is
/// another's).
pub struct TxSocket {
    name: String,
    ifindex: u32,
    fd: OwnedFd,
    /// Send with `sendmmsg` (the ring backend), one `send` per frame
    /// otherwise.
    batched: bool,
    /// Times a send waited for a full queue, since the last call of
    /// [`TxSocket::take_retries`].
    retries: u64,
}

impl TxSocket {
    /// Opens `name` for sending.
    pub fn open(name: &str, opts: SocketOptions) -> Result<Self, OpenError> {
        let iface =
            find_interface(name).ok_or_else(|| OpenError::NoSuchInterface(name.to_owned()))?;
        let fd = packet_socket(name)?;
        set_buffer(
            fd.as_raw_fd(),
            libc::SO_SNDBUFFORCE,
            libc::SO_SNDBUF,
            opts.sndbuf,
        );
        // SAFETY: sockaddr_ll is plain data.
        let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = 0;
        addr.sll_ifindex = i32::try_from(iface.index).unwrap_or(0);
        // SAFETY: binds our socket to a sockaddr_ll of the right size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(os_err(name, "bind"));
        }
        Ok(TxSocket {
            name: name.to_owned(),
            ifindex: iface.index,
            fd,
            batched: opts.backend != Backend::Pnet,
            retries: 0,
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The index of the interface the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Times a send had to wait for a full queue since the last call.
    pub fn take_retries(&mut self) -> u64 {
        std::mem::take(&mut self.retries)
    }

    /// Sends up to [`TX_BATCH`] frames; `out[i]` tells what became of
    /// frame `i`. A full queue is waited for (up to a couple of
    /// milliseconds per batch in all) rather than dropping frames the
    /// shaper has already charged for; what still cannot go is counted by
    /// the caller with its reason.
    pub fn send_batch(&mut self, frames: &[&[u8]], out: &mut [TxOutcome; TX_BATCH]) {
        self.send_batch_within(frames, out, &mut None);
    }

    /// [`send_batch`](Self::send_batch) for one of several batches that
    /// share one wait budget: `deadline` is set at the first wait (to the
    /// budget from then) and kept for the next batches, so that a queue
    /// that stays full holds the caller up a couple of milliseconds in
    /// all, not per batch.
    pub fn send_batch_within(
        &mut self,
        frames: &[&[u8]],
        out: &mut [TxOutcome; TX_BATCH],
        deadline: &mut Option<std::time::Instant>,
    ) {
        let n = frames.len().min(TX_BATCH);
        let mut done = 0usize;
        while done < n {
            let rest = frames.get(done..n).unwrap_or_default();
            let result = if self.batched {
                self.send_many(rest)
            } else {
                rest.first().map_or(Ok(0), |f| self.send_one(f))
            };
            let err = match result {
                Ok(k) if k > 0 => {
                    for o in out.iter_mut().skip(done).take(k) {
                        *o = TxOutcome::Sent;
                    }
                    done += k;
                    continue;
                }
                Ok(_) => SendError::Busy,
                Err(e) => send_error(&e),
            };
            match err {
                SendError::Busy | SendError::NoBufs => {
                    let now = std::time::Instant::now();
                    let until = *deadline.get_or_insert(now + TX_WAIT_BUDGET);
                    if now < until {
                        self.retries += 1;
                        let nobufs = matches!(err, SendError::NoBufs);
                        self.wait(nobufs, (until - now).min(TX_WAIT_STEP));
                        continue;
                    }
                    if let Some(o) = out.get_mut(done) {
                        *o = TxOutcome::QueueFull;
                    }
                    done += 1;
                }
                SendError::LinkDown => {
                    for o in out.iter_mut().skip(done).take(n - done) {
                        *o = TxOutcome::LinkDown;
                    }
                    done = n;
                }
                SendError::Refused => {
                    if let Some(o) = out.get_mut(done) {
                        *o = TxOutcome::Refused;
                    }
                    done += 1;
                }
            }
        }
    }

    /// Waits up to `max` for the socket to take frames again.
    fn wait(&self, nobufs: bool, max: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        let (watch, wait) = if nobufs {
            (false, max.min(TX_NOBUFS_PAUSE))
        } else {
            (true, max)
        };
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: one valid pollfd (or none) and a timespec alive for the
        // call.
        unsafe { libc::ppoll(&mut pfd, libc::nfds_t::from(watch), &ts, std::ptr::null()) };
    }

    /// One `send`.
    fn send_one(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: sends `frame`, alive for the call, on our bound socket.
        let rc = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(1)
        }
    }

    /// One `sendmmsg` of up to [`TX_BATCH`] frames: how many went.
    fn send_many(&self, frames: &[&[u8]]) -> io::Result<usize> {
        let n = frames.len().min(TX_BATCH);
        // SAFETY: plain data, filled below.
        let mut iov: [libc::iovec; TX_BATCH] = unsafe { mem::zeroed() };
        let mut msgs: [libc::mmsghdr; TX_BATCH] = unsafe { mem::zeroed() };
        for ((v, m), f) in iov.iter_mut().zip(msgs.iter_mut()).zip(frames).take(n) {
            v.iov_base = f.as_ptr() as *mut libc::c_void;
            v.iov_len = f.len();
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: msgs[..n] point at iovecs and frames alive for the call;
        // the socket is bound, so no address is needed.
        let rc = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc as usize)
        }
    }
}
