//! Is an interface still there, up, and with carrier? The data path asks a
//! few times a second, because an AF_PACKET socket does not say: when its
//! interface is removed the socket reports one ENETDOWN and then stays
//! silent forever, even after an interface of the same name comes back
//! (it is bound to the old ifindex), and a lost carrier shows nowhere on
//! the socket at all.
//!
//! Three ioctls per question on a datagram socket held for the purpose
//! (SIOCGIFINDEX, SIOCGIFFLAGS, SIOCETHTOOL with ETHTOOL_GLINK): no
//! allocation, no file system, and no privilege needed.
//!
//! Why not IFF_RUNNING for the carrier: it is the RFC 2863 operational
//! state, which the kernel's linkwatch worker updates up to a second after
//! the carrier changes, while the device already forwards. The driver's
//! link state (what `/sys/class/net/*/carrier` shows) changes at once.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// What the kernel says about an interface right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    /// Its index; a re-created interface has a new one.
    pub ifindex: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Carrier present: the driver's link state (ETHTOOL_GLINK), or, for
    /// drivers that do not report one, IFF_RUNNING.
    pub carrier: bool,
}

const IFF_UP: u16 = 0x1;
const IFF_RUNNING: u16 = 0x40;
/// linux/ethtool.h: "get link status", allowed without CAP_NET_ADMIN.
const ETHTOOL_GLINK: u32 = 0x0a;

/// `struct ifreq`: the name, then a union of which these ioctls use the
/// first 4 bytes (an `int` ifindex or a `short` flags word) or, for
/// SIOCETHTOOL, a pointer.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: [u8; 24],
}

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

impl IfReq {
    /// A request about `name`; `None` when no interface can have it.
    fn named(name: &str) -> Option<Self> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return None;
        }
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        Some(req)
    }
}

/// Asks the kernel about interfaces by name.
#[derive(Debug)]
pub struct LinkProbe {
    fd: OwnedFd,
}

impl LinkProbe {
    /// A probe (one datagram socket, used only as a handle for ioctls).
    pub fn new() -> io::Result<Self> {
        // Without IPv4 (rare), a Unix socket serves as well: these ioctls
        // fall through to the device layer for any address family.
        for family in [libc::AF_INET, libc::AF_UNIX] {
            // SAFETY: plain socket(2) call.
            let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
            if fd >= 0 {
                // SAFETY: a descriptor we just created and own.
                return Ok(LinkProbe {
                    fd: unsafe { OwnedFd::from_raw_fd(fd) },
                });
            }
        }
        Err(io::Error::last_os_error())
    }

    /// The status of `name`; `None` when no interface has that name (or
    /// the name cannot be one).
    pub fn status(&self, name: &str) -> Option<LinkStatus> {
        let ifindex = self.ioctl(name, libc::SIOCGIFINDEX)?;
        let flags = self.ioctl(name, libc::SIOCGIFFLAGS)?;
        let [ia, ib, ic, id] = ifindex;
        let [fa, fb, _, _] = flags;
        let flags = u16::from_ne_bytes([fa, fb]);
        let carrier = self.driver_link(name).unwrap_or(flags & IFF_RUNNING != 0);
        Some(LinkStatus {
            ifindex: u32::from_ne_bytes([ia, ib, ic, id]),
            up: flags & IFF_UP != 0,
            carrier,
        })
    }

    /// The driver's link state, if it reports one.
    fn driver_link(&self, name: &str) -> Option<bool> {
        let mut value = EthtoolValue {
            cmd: ETHTOOL_GLINK,
            data: 0,
        };
        let mut req = IfReq::named(name)?;
        let ptr = (&mut value as *mut EthtoolValue).cast::<u8>() as usize;
        for (dst, src) in req.data.iter_mut().zip(ptr.to_ne_bytes()) {
            *dst = src;
        }
        // SAFETY: SIOCETHTOOL reads the name and the ethtool_value the
        // union points to, both alive for the call, and writes the value.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SIOCETHTOOL as _, &mut req) };
        (rc == 0).then_some(value.data != 0)
    }

    /// The first 4 bytes of the ifreq union after `request`.
    fn ioctl(&self, name: &str, request: libc::c_ulong) -> Option<[u8; 4]> {
        let mut req = IfReq::named(name)?;
        // SAFETY: the ioctl reads the name and writes at most the union
        // part of `req`, which lives for the call.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), request as _, &mut req) };
        if rc < 0 {
            return None;
        }
        let [a, b, c, d, ..] = req.data;
        Some([a, b, c, d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loopback exists in every network namespace, is up and counts as
    /// having carrier; a name no interface can have is not found.
    #[test]
    fn loopback_is_up_and_a_missing_name_is_none() {
        let p = LinkProbe::new().unwrap();
        let lo = p.status("lo").expect("lo exists");
        assert_eq!(lo.ifindex, 1, "loopback is always ifindex 1");
        assert!(lo.up && lo.carrier, "{lo:?}");
        assert_eq!(p.status("qosd-nonexistent0"), None);
        assert_eq!(p.status(""), None);
        assert_eq!(p.status("a-name-far-too-long-for-linux"), None);
    }
}
