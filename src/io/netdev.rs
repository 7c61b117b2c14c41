//! Facts about network interfaces the daemon checks at start-up, and the
//! receive offloads it turns off (and restores): GRO, GSO, TSO and LRO hand
//! AF_PACKET frames larger than the MTU, which cannot be forwarded as they
//! are.

use std::fs;
use std::io;
use std::mem;
use std::path::Path;

/// What `/sys/class/net/<name>` says about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netdev {
    /// Interface name.
    pub name: String,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// MTU in bytes.
    pub mtu: usize,
    /// The bridge (or other master) it is enslaved to, if any.
    pub master: Option<String>,
}

const IFF_UP: u32 = 0x1;

/// Reads `name`'s facts; `None` when there is no such interface.
pub fn netdev(name: &str) -> Option<Netdev> {
    let dir = Path::new("/sys/class/net").join(name);
    if !dir.exists() || name.contains('/') {
        return None;
    }
    let read = |f: &str| {
        fs::read_to_string(dir.join(f))
            .ok()
            .map(|s| s.trim().to_owned())
    };
    let flags = read("flags")
        .and_then(|s| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    let master = fs::read_link(dir.join("master"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    Some(Netdev {
        name: name.to_owned(),
        up: flags & IFF_UP != 0,
        mtu: read("mtu").and_then(|s| s.parse().ok()).unwrap_or(1500),
        master,
    })
}

/// True when `name` is a kernel bridge.
pub fn is_bridge(name: &str) -> bool {
    Path::new("/sys/class/net")
        .join(name)
        .join("bridge")
        .exists()
}

/// The offloads that make AF_PACKET see super-frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offloads {
    /// Generic receive offload.
    pub gro: bool,
    /// Generic segmentation offload.
    pub gso: bool,
    /// TCP segmentation offload.
    pub tso: bool,
    /// Large receive offload.
    pub lro: bool,
}

impl Offloads {
    /// True when any is on.
    pub fn any(self) -> bool {
        self.gro || self.gso || self.tso || self.lro
    }

    /// The names of those on, for messages ("gro gso").
    pub fn names(self) -> String {
        [
            ("gro", self.gro),
            ("gso", self.gso),
            ("tso", self.tso),
            ("lro", self.lro),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(" ")
    }
}

// Legacy ethtool commands (linux/ethtool.h): each reads or writes one
// feature through a `struct ethtool_value`.
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GGSO: u32 = 0x23;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETH_FLAG_LRO: u32 = 1 << 15;
const ETH_FLAG_RXVLAN: u32 = 1 << 8;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ethtool(name: &str, cmd: u32, data: u32) -> io::Result<u32> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::other("interface name too long"));
    }
    let mut value = EthtoolValue { cmd, data };
    // SAFETY: IfReq is plain data.
    let mut req: IfReq = unsafe { mem::zeroed() };
    for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: a datagram socket only serves as a handle for the ioctl.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCETHTOOL reads the name and the ethtool_value `req`
    // points to, both alive for the call.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL as _, &mut req) };
    let err = io::Error::last_os_error();
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    if rc < 0 { Err(err) } else { Ok(value.data) }
}

/// Reads `name`'s offloads. Unsupported features read as off.
pub fn offloads(name: &str) -> io::Result<Offloads> {
    // An interface that does not exist fails here, with a clear error.
    let gro = ethtool(name, ETHTOOL_GGRO, 0)? != 0;
    Ok(Offloads {
        gro,
        gso: ethtool(name, ETHTOOL_GGSO, 0).unwrap_or(0) != 0,
        tso: ethtool(name, ETHTOOL_GTSO, 0).unwrap_or(0) != 0,
        lro: ethtool(name, ETHTOOL_GFLAGS, 0).unwrap_or(0) & ETH_FLAG_LRO != 0,
    })
}

/// Whether `name` is a NIC (it has a device behind it) that strips VLAN
/// tags in hardware (rx-vlan-offload). Such a driver takes the tag off
/// before an XDP program sees the frame, and AF_XDP hands no metadata for
/// it, so the tag would be lost. Virtual interfaces (veth) report the
/// offload too, but untag in software after XDP: they do not count.
pub fn strips_vlan_in_hardware(name: &str) -> bool {
    let physical = std::path::Path::new("/sys/class/net")
        .join(name)
        .join("device")
        .exists();
    physical && ethtool(name, ETHTOOL_GFLAGS, 0).unwrap_or(0) & ETH_FLAG_RXVLAN != 0
}

/// Sets `name`'s offloads to `want`; returns what they are afterwards.
pub fn set_offloads(name: &str, want: Offloads) -> io::Result<Offloads> {
    let now = offloads(name)?;
    if now.gro != want.gro {
        ethtool(name, ETHTOOL_SGRO, u32::from(want.gro))?;
    }
    if now.gso != want.gso {
        ethtool(name, ETHTOOL_SGSO, u32::from(want.gso))?;
    }
    if now.tso != want.tso {
        ethtool(name, ETHTOOL_STSO, u32::from(want.tso))?;
    }
    if now.lro != want.lro {
        let flags = ethtool(name, ETHTOOL_GFLAGS, 0)?;
        let flags = if want.lro {
            flags | ETH_FLAG_LRO
        } else {
            flags & !ETH_FLAG_LRO
        };
        ethtool(name, ETHTOOL_SFLAGS, flags)?;
    }
    offloads(name)
}

// Bridge ioctls (linux/sockios.h).
const SIOCBRDELBR: libc::c_ulong = 0x89a1;
const SIOCBRDELIF: libc::c_ulong = 0x89a3;

#[repr(C)]
struct IfReqIndex {
    name: [libc::c_char; libc::IFNAMSIZ],
    ifindex: libc::c_int,
    _pad: [u8; 20],
}

#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn ifname(name: &str) -> io::Result<[libc::c_char; libc::IFNAMSIZ]> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::other("bad interface name"));
    }
    let mut out = [0 as libc::c_char; libc::IFNAMSIZ];
    for (d, s) in out.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(out)
}

fn ioctl_socket() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2); the fd is owned by the returned OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is not owned elsewhere.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::other("bad interface name"))?;
    // SAFETY: a valid NUL-terminated name.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// The ports of bridge `name`.
pub fn bridge_ports(name: &str) -> Vec<String> {
    fs::read_dir(Path::new("/sys/class/net").join(name).join("brif"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Detaches every port from the kernel bridge `name`, takes it down and
/// deletes it (what `ip link del` does, through the bridge ioctls).
pub fn remove_bridge(name: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let sock = ioctl_socket()?;
    let fd = sock.as_raw_fd();
    let br = ifname(name)?;
    for port in bridge_ports(name) {
        let req = IfReqIndex {
            name: br,
            ifindex: ifindex(&port)? as libc::c_int,
            _pad: [0; 20],
        };
        // SAFETY: SIOCBRDELIF reads the ifreq for the call's duration.
        if unsafe { libc::ioctl(fd, SIOCBRDELIF as _, &req) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let mut flags = IfReqFlags {
        name: br,
        flags: 0,
        _pad: [0; 22],
    };
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut flags) == 0 {
            flags.flags &= !(libc::IFF_UP as libc::c_short);
            libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &flags);
        }
    }
    // SAFETY: SIOCBRDELBR takes the bridge name as a C string.
    if unsafe { libc::ioctl(fd, SIOCBRDELBR as _, br.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_facts() {
        let lo = netdev("lo").expect("every Linux machine has lo");
        assert!(lo.up);
        assert!(lo.mtu >= 1500);
        assert!(lo.master.is_none());
        assert!(netdev("no-such-if0").is_none());
        assert!(netdev("../etc").is_none());
        assert!(!is_bridge("lo"));
        assert!(offloads("no-such-if0").is_err());
        assert_eq!(
            Offloads {
                gro: true,
                lro: true,
                ..Offloads::default()
            }
            .names(),
            "gro lro"
        );
    }
}
