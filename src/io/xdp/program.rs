//! The XDP program that hands an interface's frames to qosd's AF_XDP
//! sockets, and its socket map: five instructions, loaded and attached
//! with four `bpf(2)` commands.
//!
//! Why by hand and not through a crate: the well-kept loaders (aya,
//! libbpf-rs) load programs from an ELF object, which needs clang or
//! bpf-linker with a nightly toolchain to build, or a binary blob in the
//! repository; libxdp-sys builds libxdp and its BPF objects from C. The
//! program is libxdp's default one (`xsk_def_prog`): redirect every frame
//! to the socket of its receive queue, or pass it to the kernel when that
//! queue has none. Five instructions and four system calls are less to
//! trust than any of those tool chains. The sockets themselves come from
//! `xdpilone` (see `super`).
//!
//! The program is attached through a BPF link: the kernel detaches it when
//! the link's descriptor closes, so a qosd that exits or crashes leaves no
//! program behind and the interface is the kernel's again at once.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// bpf(2) commands (linux/bpf.h, enum bpf_cmd).
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_LINK_CREATE: libc::c_int = 28;
// enum bpf_map_type, enum bpf_prog_type, enum bpf_attach_type.
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
/// `bpf_redirect_map`'s helper number.
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// The action when the queue's slot in the map is empty (since Linux 5.3
/// the low bits of `bpf_redirect_map`'s flags).
const XDP_PASS: i32 = 2;

/// Where the program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver, before an skb exists (veth, most 10G+ NICs).
    Native,
    /// After the skb is built, on any interface ("generic XDP").
    Generic,
}

impl AttachMode {
    fn flags(self) -> u32 {
        match self {
            AttachMode::Native => 1 << 2,  // XDP_FLAGS_DRV_MODE
            AttachMode::Generic => 1 << 1, // XDP_FLAGS_SKB_MODE
        }
    }

    /// For logs and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);`
fn redirect_program(map_fd: i32) -> [Insn; 6] {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
    // rx_queue_index (offset 16).
    [
        insn(0x61, 2, 1, 16, 0),       // r2 = *(u32 *)(r1 + 16)
        insn(0x18, 1, 1, 0, map_fd),   // r1 = map (ld_imm64, BPF_PSEUDO_MAP_FD)
        insn(0x00, 0, 0, 0, 0),        //      (second half of ld_imm64)
        insn(0xb7, 3, 0, 0, XDP_PASS), // r3 = XDP_PASS
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        insn(0x95, 0, 0, 0, 0), // exit
    ]
}

#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct MapUpdate {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// `bpf(cmd, attr, sizeof attr)`: a new descriptor, or 0 for commands that
/// return none.
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a repr(C) prefix of `union bpf_attr` for `cmd`,
    // alive and writable for the call; the kernel reads (and for some
    // commands writes) at most `size_of::<T>()` bytes of it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("descriptor out of range"))?;
    // SAFETY: a descriptor the kernel just returned to us, owned by no one
    // else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn name16(s: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(s.bytes().take(15)) {
        *o = b;
    }
    out
}

/// Which `bpf(2)` step failed: the error names it.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Creating the socket map.
    MapCreate,
    /// Loading the program (the verifier refused it, or no CAP_BPF).
    ProgLoad,
    /// Putting a socket into the map.
    MapUpdate,
    /// Attaching to the interface.
    Attach,
}

impl Step {
    /// For error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::MapCreate => "creating the XDP socket map",
            Step::ProgLoad => "loading the XDP program",
            Step::MapUpdate => "registering an XDP socket in the map",
            Step::Attach => "attaching the XDP program",
        }
    }
}

/// The map and program of one interface, attached: dropping it detaches
/// the program (the link's last descriptor closes).
pub struct Redirect {
    map: OwnedFd,
    // Kept only so the kernel keeps them: the link holds the program, the
    // program the map.
    _prog: OwnedFd,
    link: Option<OwnedFd>,
    mode: Option<AttachMode>,
}

impl Redirect {
    /// Loads the program with a map of `queues` slots (one per receive
    /// queue). Not attached yet: sockets go into the map first, so no
    /// frame is passed to the kernel in between.
    pub fn load(queues: u32) -> Result<Self, (Step, io::Error)> {
        let mut attr = MapCreate {
            map_type: BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: queues.max(1),
            map_name: name16("qosd_xsks"),
            ..MapCreate::default()
        };
        let map = bpf(BPF_MAP_CREATE, &mut attr)
            .and_then(owned)
            .map_err(|e| (Step::MapCreate, e))?;
        let insns = redirect_program(map.as_raw_fd());
        let license = c"Dual MIT/GPL";
        let mut attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name16("qosd_redirect"),
            expected_attach_type: BPF_XDP,
            ..ProgLoad::default()
        };
        // Without a log first: a log too small for what a kernel prints
        // fails even a valid program (ENOSPC). The log only to explain a
        // refusal, as libbpf does.
        let mut log = vec![0u8; 64 << 10];
        let loaded = bpf(BPF_PROG_LOAD, &mut attr).or_else(|_| {
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            bpf(BPF_PROG_LOAD, &mut attr)
        });
        let prog = match loaded.and_then(owned) {
            Ok(p) => p,
            Err(e) => {
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(log.get(..end).unwrap_or_default());
                let e = if text.trim().is_empty() {
                    e
                } else {
                    io::Error::new(e.kind(), format!("{e}; verifier: {}", text.trim()))
                };
                return Err((Step::ProgLoad, e));
            }
        };
        Ok(Redirect {
            map,
            _prog: prog,
            link: None,
            mode: None,
        })
    }

    /// Sends receive queue `queue`'s frames to the AF_XDP socket `xsk`.
    pub fn set_socket(&self, queue: u32, xsk: i32) -> Result<(), (Step, io::Error)> {
        let key = queue;
        let value = xsk as u32;
        let mut attr = MapUpdate {
            map_fd: self.map.as_raw_fd() as u32,
            key: (&key as *const u32) as u64,
            value: (&value as *const u32) as u64,
            ..MapUpdate::default()
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
            .map(drop)
            .map_err(|e| (Step::MapUpdate, e))
    }

    /// Attaches the program to interface `ifindex`, in the driver if it
    /// can, else generically.
    pub fn attach(&mut self, ifindex: u32, modes: &[AttachMode]) -> Result<(), (Step, io::Error)> {
        let mut last = io::Error::other("no attach mode to try");
        for &mode in modes {
            let mut attr = LinkCreate {
                prog_fd: self._prog.as_raw_fd() as u32,
                target_ifindex: ifindex,
                attach_type: BPF_XDP,
                flags: mode.flags(),
            };
            match bpf(BPF_LINK_CREATE, &mut attr).and_then(owned) {
                Ok(link) => {
                    self.link = Some(link);
                    self.mode = Some(mode);
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    let e = io::Error::new(
                        e.kind(),
                        format!("{e}: another XDP program is attached to the interface"),
                    );
                    return Err((Step::Attach, e));
                }
                Err(e) => {
                    last = io::Error::new(e.kind(), format!("{} mode: {e}", mode.as_str()));
                }
            }
        }
        Err((Step::Attach, last))
    }

    /// Where the program runs, once attached.
    pub fn mode(&self) -> Option<AttachMode> {
        self.mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_libxdps_default_redirect() {
        let p = redirect_program(7);
        // ld_imm64 names the map by descriptor, flagged as such.
        assert_eq!((p[1].code, p[1].regs, p[1].imm), (0x18, 0x11, 7));
        // The queue index is read from xdp_md into r2, the fallback
        // action is XDP_PASS in r3, then the helper is called.
        assert_eq!((p[0].regs, p[0].off), (0x12, 16));
        assert_eq!((p[3].regs, p[3].imm), (0x03, 2));
        assert_eq!(p[4].imm, 51);
        assert_eq!(p[5].code, 0x95);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn attributes_have_the_kernels_layout() {
        // Offsets of union bpf_attr's members for each command.
        assert_eq!(std::mem::size_of::<MapCreate>(), 44);
        assert_eq!(std::mem::size_of::<MapUpdate>(), 32);
        assert_eq!(std::mem::offset_of!(ProgLoad, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoad, expected_attach_type), 68);
        assert_eq!(std::mem::size_of::<LinkCreate>(), 16);
    }
}
