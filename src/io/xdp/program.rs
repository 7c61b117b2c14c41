//! The XDP program that hands an interface's frames to qosd's AF_XDP
//! sockets, with its maps, assembled here and loaded and attached with a
//! few `bpf(2)` commands.
//!
//! Why by hand and not through a crate: the well-kept loaders (aya,
//! libbpf-rs) load programs from an ELF object, which needs clang or
//! bpf-linker with a nightly toolchain to build, or a binary blob in the
//! repository; libxdp-sys builds libxdp and its BPF objects from C. The
//! program is libxdp's default one (`xsk_def_prog`: redirect every frame
//! to the socket of its receive queue, or pass it to the kernel when that
//! queue has none) plus a doorbell: a frame of a flow qosd marked urgent
//! adds a record to a BPF ring buffer, whose descriptor wakes qosd's data
//! path from `poll` even while it does not watch its sockets (see
//! `super::bell` and `packet::bell`). About 80 instructions that the
//! kernel's verifier checks at load, and a unit test of their encoding,
//! are less to trust than any of those tool chains. Where the kernel has
//! no ring buffers (before 5.8) the program is the plain redirect, and
//! the data path waits for voice as the other backends do. The sockets
//! themselves come from `xdpilone` (see `super`).
//!
//! The program is attached through a BPF link: the kernel detaches it when
//! the link's descriptor closes, so a qosd that exits or crashes leaves no
//! program behind and the interface is the kernel's again at once.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// bpf(2) commands (linux/bpf.h, enum bpf_cmd).
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_TEST_RUN: libc::c_int = 10;
const BPF_LINK_CREATE: libc::c_int = 28;
// enum bpf_map_type, enum bpf_prog_type, enum bpf_attach_type.
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_MAP_TYPE_RINGBUF: u32 = 27;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
/// Helper numbers: `bpf_map_lookup_elem`, `bpf_redirect_map`,
/// `bpf_ringbuf_output`.
const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const BPF_FUNC_RINGBUF_OUTPUT: i32 = 130;
/// Flows whose frames ring the doorbell, at most: twice what the engine
/// follows (`engine::bells`), so an insert never finds the map full.
pub const BELL_FLOWS: u32 = 64;
/// Bytes each ring of the doorbell adds to its ring buffer: the kernel's
/// 8-byte record header and 8 bytes of the key.
pub const BELL_RECORD: u64 = 16;
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

/// `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);`: where
/// the kernel cannot load the doorbell's (no ring buffers before 5.8).
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

// Instruction classes and fields (linux/bpf_common.h, linux/bpf.h).
/// BPF_LDX | BPF_MEM, BPF_ST | BPF_MEM, BPF_STX | BPF_MEM; a size is or-ed in.
const LDX_MEM: u8 = 0x61;
const ST_MEM: u8 = 0x62;
const STX_MEM: u8 = 0x63;
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const DW: u8 = 0x18;
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const ADD64_K: u8 = 0x07;
const AND64_K: u8 = 0x57;
const JA: u8 = 0x05;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const JGT_X: u8 = 0x2d;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
/// The frame pointer (read only): the stack lies below it.
const FP: u8 = 10;

/// A forward-jumping assembler: labels are placed after the jumps to them
/// and the offsets filled in at the end.
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    jumps: Vec<(usize, usize)>,
}

impl Asm {
    fn new() -> Self {
        Asm {
            insns: Vec::with_capacity(96),
            labels: Vec::new(),
            jumps: Vec::new(),
        }
    }

    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    fn here(&mut self, label: usize) {
        if let Some(l) = self.labels.get_mut(label) {
            *l = Some(self.insns.len());
        }
    }

    fn op(&mut self, i: Insn) -> &mut Self {
        self.insns.push(i);
        self
    }

    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: usize) -> &mut Self {
        self.jumps.push((self.insns.len(), to));
        self.op(insn(code, dst, src, 0, imm))
    }

    /// Jumps to `fail` unless the frame has `bytes` bytes from r2 on
    /// (r2 a packet pointer, r3 the frame's end; r4 is used): the check
    /// the verifier wants before any read of the packet.
    fn need(&mut self, bytes: i32, fail: usize) -> &mut Self {
        self.op(insn(MOV64_X, 4, 2, 0, 0))
            .op(insn(ADD64_K, 4, 0, 0, bytes))
            .jump(JGT_X, 4, 3, 0, fail)
    }

    /// `dst = map` by descriptor (a two-slot ld_imm64, BPF_PSEUDO_MAP_FD).
    fn map(&mut self, dst: u8, fd: i32) -> &mut Self {
        self.op(insn(0x18, dst, 1, 0, fd)).op(insn(0, 0, 0, 0, 0))
    }

    /// The program, or None if a jump goes to a label never placed or too
    /// far (a bug in the program text, found by its unit test).
    fn finish(mut self) -> Option<Vec<Insn>> {
        for &(at, to) in &self.jumps {
            let target = (*self.labels.get(to)?)?;
            let off = i16::try_from(target.checked_sub(at + 1)?).ok()?;
            self.insns.get_mut(at)?.off = off;
        }
        Some(self.insns)
    }
}

/// The program with the doorbell: frames of the flows in `bells` (their
/// key, built as `packet::bell::bell_key` builds it, is in the map) add a
/// record to the ring buffer `ring`, whose descriptor wakes qosd's thread
/// from `poll`; then every frame goes to its queue's socket in `xsks`, as
/// in [`redirect_program`]. In C:
///
/// ```text
/// key = {0}; l3 = data + 14; type = eth->h_proto;
/// if (type is 802.1Q or 802.1ad) { type = vlan->encapsulated; l3 += 4; }
/// if (type == IPv4 && ihl == 5 && proto == UDP && !frag_offset) key = ...;
/// else if (type == IPv6 && nexthdr == UDP) key = ...;
/// if (key && bpf_map_lookup_elem(&bells, &key))
///     bpf_ringbuf_output(&ring, &key, 8, 0);
/// return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
/// ```
fn bell_program(xsks: i32, bells: i32, ring: i32) -> Option<Vec<Insn>> {
    use crate::packet::bell::{KEY_DST, KEY_PORTS, KEY_SRC, KEY_VERSION};
    const KEY: i16 = -(crate::packet::bell::BELL_KEY_LEN as i16);
    // The key's parts on the stack (FP + KEY is the key's first byte).
    let at = |part: usize| KEY + part as i16;
    let mut a = Asm::new();
    let (vlan, l3, ipv4, ipv6, lookup, redirect) = (
        a.label(),
        a.label(),
        a.label(),
        a.label(),
        a.label(),
        a.label(),
    );
    // r6 = ctx (kept across calls); r2 = data, r3 = data_end.
    a.op(insn(MOV64_X, 6, 1, 0, 0))
        .op(insn(LDX_MEM | W, 2, 6, 0, 0))
        .op(insn(LDX_MEM | W, 3, 6, 4, 0));
    for off in (KEY..0).step_by(8) {
        a.op(insn(ST_MEM | DW, FP, 0, off, 0));
    }
    // Ethernet: r5 = the EtherType, as loaded (little-endian reads of
    // network-order bytes: 0x0800 reads 0x0008).
    a.need(14, redirect)
        .op(insn(LDX_MEM | H, 5, 2, 12, 0))
        .jump(JEQ_K, 5, 0, 0x0081, vlan)
        .jump(JEQ_K, 5, 0, 0xa888, vlan)
        .jump(JA, 0, 0, 0, l3);
    a.here(vlan);
    // One tag: the EtherType after it; r2 moves on 4 bytes so that the IP
    // header is at r2 + 14 either way.
    a.need(18, redirect)
        .op(insn(LDX_MEM | H, 5, 2, 16, 0))
        .op(insn(ADD64_K, 2, 0, 0, 4));
    a.here(l3);
    a.jump(JEQ_K, 5, 0, 0x0008, ipv4)
        .jump(JEQ_K, 5, 0, 0xdd86, ipv6)
        .jump(JA, 0, 0, 0, redirect);
    a.here(ipv4);
    // 20 bytes of header (no options) and the ports.
    a.need(14 + 20 + 4, redirect)
        .op(insn(LDX_MEM | B, 0, 2, 14, 0))
        .jump(JNE_K, 0, 0, 0x45, redirect)
        .op(insn(LDX_MEM | B, 0, 2, 14 + 9, 0))
        .jump(JNE_K, 0, 0, 17, redirect)
        .op(insn(LDX_MEM | H, 0, 2, 14 + 6, 0))
        .op(insn(AND64_K, 0, 0, 0, 0xff1f))
        .jump(JNE_K, 0, 0, 0, redirect)
        .op(insn(LDX_MEM | W, 0, 2, 14 + 20, 0))
        .op(insn(STX_MEM | W, FP, 0, at(KEY_PORTS), 0))
        .op(insn(ST_MEM | W, FP, 0, at(KEY_VERSION), 0x1104))
        .op(insn(LDX_MEM | W, 0, 2, 14 + 12, 0))
        .op(insn(STX_MEM | W, FP, 0, at(KEY_SRC), 0))
        .op(insn(LDX_MEM | W, 0, 2, 14 + 16, 0))
        .op(insn(STX_MEM | W, FP, 0, at(KEY_DST), 0))
        .jump(JA, 0, 0, 0, lookup);
    a.here(ipv6);
    a.need(14 + 40 + 4, redirect)
        .op(insn(LDX_MEM | B, 0, 2, 14 + 6, 0))
        .jump(JNE_K, 0, 0, 17, redirect)
        .op(insn(LDX_MEM | W, 0, 2, 14 + 40, 0))
        .op(insn(STX_MEM | W, FP, 0, at(KEY_PORTS), 0))
        .op(insn(ST_MEM | W, FP, 0, at(KEY_VERSION), 0x1106));
    for i in 0..4i16 {
        a.op(insn(LDX_MEM | W, 0, 2, 14 + 8 + 4 * i, 0))
            .op(insn(STX_MEM | W, FP, 0, at(KEY_SRC) + 4 * i, 0))
            .op(insn(LDX_MEM | W, 0, 2, 14 + 24 + 4 * i, 0))
            .op(insn(STX_MEM | W, FP, 0, at(KEY_DST) + 4 * i, 0));
    }
    a.here(lookup);
    a.map(1, bells)
        .op(insn(MOV64_X, 2, FP, 0, 0))
        .op(insn(ADD64_K, 2, 0, 0, KEY.into()))
        .op(insn(CALL, 0, 0, 0, BPF_FUNC_MAP_LOOKUP_ELEM))
        .jump(JEQ_K, 0, 0, 0, redirect)
        .map(1, ring)
        .op(insn(MOV64_X, 2, FP, 0, 0))
        .op(insn(ADD64_K, 2, 0, 0, KEY.into()))
        .op(insn(MOV64_K, 3, 0, 0, 8))
        .op(insn(MOV64_K, 4, 0, 0, 0))
        .op(insn(CALL, 0, 0, 0, BPF_FUNC_RINGBUF_OUTPUT));
    a.here(redirect);
    a.op(insn(LDX_MEM | W, 2, 6, 16, 0))
        .map(1, xsks)
        .op(insn(MOV64_K, 3, 0, 0, XDP_PASS))
        .op(insn(CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP))
        .op(insn(EXIT, 0, 0, 0, 0));
    a.finish()
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
struct TestRun {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
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

/// Loads an XDP program: its descriptor, or the kernel's refusal with the
/// verifier's explanation.
fn load_xdp(insns: &[Insn]) -> io::Result<OwnedFd> {
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
    let mut log = vec![0u8; 256 << 10];
    let loaded = bpf(BPF_PROG_LOAD, &mut attr).or_else(|_| {
        attr.log_level = 1;
        attr.log_size = log.len() as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
        bpf(BPF_PROG_LOAD, &mut attr)
    });
    loaded.and_then(owned).map_err(|e| {
        let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(log.get(..end).unwrap_or_default());
        // The verifier's last lines say what it refused.
        let tail: Vec<&str> = text.trim().lines().rev().take(8).collect();
        if tail.is_empty() {
            e
        } else {
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            io::Error::new(e.kind(), format!("{e}; verifier: {}", tail.join(" / ")))
        }
    })
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

/// The doorbell's maps: the flows that ring it, and the ring buffer whose
/// descriptor `poll` reports readable once one did.
pub struct BellMaps {
    flows: OwnedFd,
    ring: OwnedFd,
}

impl BellMaps {
    fn create() -> io::Result<Self> {
        let mut attr = MapCreate {
            map_type: BPF_MAP_TYPE_HASH,
            key_size: crate::packet::bell::BELL_KEY_LEN as u32,
            value_size: 4,
            max_entries: BELL_FLOWS,
            map_name: name16("qosd_bells"),
            ..MapCreate::default()
        };
        let flows = bpf(BPF_MAP_CREATE, &mut attr).and_then(owned)?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let mut attr = MapCreate {
            map_type: BPF_MAP_TYPE_RINGBUF,
            // One page (a power of two) holds 256 rings: many more than
            // arrive between two turns of the data path.
            max_entries: u32::try_from(page).unwrap_or(4096).max(4096),
            map_name: name16("qosd_bell_ring"),
            ..MapCreate::default()
        };
        let ring = bpf(BPF_MAP_CREATE, &mut attr).and_then(owned)?;
        Ok(BellMaps { flows, ring })
    }

    /// The ring buffer (to map and to `poll`).
    pub fn ring_fd(&self) -> std::os::fd::RawFd {
        self.ring.as_raw_fd()
    }

    /// Makes the frames of the flow with `key` ring the doorbell (`on`), or
    /// no longer.
    pub fn set(&self, key: &crate::packet::bell::BellKey, on: bool) -> io::Result<()> {
        let value = 1u32;
        let mut attr = MapUpdate {
            map_fd: self.flows.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value: if on { (&value as *const u32) as u64 } else { 0 },
            ..MapUpdate::default()
        };
        match bpf(
            if on {
                BPF_MAP_UPDATE_ELEM
            } else {
                BPF_MAP_DELETE_ELEM
            },
            &mut attr,
        ) {
            Ok(_) => Ok(()),
            // Already gone is what was asked.
            Err(e) if !on && e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The map and program of one interface, attached: dropping it detaches
/// the program (the link's last descriptor closes).
pub struct Redirect {
    map: OwnedFd,
    // Kept so the kernel keeps them: the link holds the program, the
    // program its maps.
    prog: OwnedFd,
    bell: Option<BellMaps>,
    /// Why there is no doorbell (an old kernel, a verifier's refusal).
    no_bell: Option<io::Error>,
    link: Option<OwnedFd>,
    mode: Option<AttachMode>,
}

impl Redirect {
    /// Loads the program with a map of `queues` slots (one per receive
    /// queue), with the doorbell where the kernel has ring buffers (5.8+).
    /// Not attached yet: sockets go into the map first, so no frame is
    /// passed to the kernel in between.
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
        let xsks = map.as_raw_fd();
        let with_bell = if cfg!(target_endian = "little") {
            BellMaps::create().and_then(|b| {
                // The program compares network-order fields read as
                // little-endian words.
                let insns = bell_program(xsks, b.flows.as_raw_fd(), b.ring.as_raw_fd())
                    .ok_or_else(|| io::Error::other("the doorbell program does not assemble"))?;
                load_xdp(&insns).map(|prog| (prog, b))
            })
        } else {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the doorbell program is written for little-endian hosts",
            ))
        };
        let (prog, bell, no_bell) = match with_bell {
            Ok((prog, b)) => (prog, Some(b), None),
            Err(e) => (
                load_xdp(&redirect_program(xsks)).map_err(|e| (Step::ProgLoad, e))?,
                None,
                Some(e),
            ),
        };
        Ok(Redirect {
            map,
            prog,
            bell,
            no_bell,
            link: None,
            mode: None,
        })
    }

    /// Why the program has no doorbell, if it has none.
    pub fn no_bell(&self) -> Option<&io::Error> {
        self.no_bell.as_ref()
    }

    /// The doorbell's maps, if the program has them.
    pub fn bell(&self) -> Option<&BellMaps> {
        self.bell.as_ref()
    }

    /// Runs the program once on `frame` (`BPF_PROG_TEST_RUN`, nothing is
    /// received or sent): its verdict. For tests of the program itself.
    pub fn test_run(&self, frame: &[u8]) -> io::Result<u32> {
        let mut attr = TestRun {
            prog_fd: self.prog.as_raw_fd() as u32,
            data_size_in: u32::try_from(frame.len()).unwrap_or(u32::MAX),
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ..TestRun::default()
        };
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        Ok(attr.retval)
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
                prog_fd: self.prog.as_raw_fd() as u32,
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
    fn the_bell_program_jumps_within_itself_and_names_its_three_maps() {
        let p = bell_program(7, 8, 9).unwrap();
        assert!(p.len() < 100, "{} instructions", p.len());
        assert_eq!(p.last().unwrap().code, EXIT);
        let mut maps = Vec::new();
        for (i, x) in p.iter().enumerate() {
            let class = x.code & 0x07;
            if class == 0x05 && x.code != CALL && x.code != EXIT {
                // Every jump lands on an instruction, forward only.
                let to = i as i64 + 1 + i64::from(x.off);
                assert!(x.off >= 0 && (to as usize) < p.len(), "jump at {i}");
            }
            if x.code == 0x18 {
                assert_eq!(x.regs >> 4, 1, "a map by descriptor");
                maps.push(x.imm);
            }
        }
        // The flows, the ring, then the sockets (the redirect every frame
        // ends in).
        assert_eq!(maps, vec![8, 9, 7]);
        let calls: Vec<i32> = p.iter().filter(|x| x.code == CALL).map(|x| x.imm).collect();
        assert_eq!(calls, vec![1, 130, 51]);
        // A label never placed is refused, not encoded as a jump to 0.
        let mut a = Asm::new();
        let nowhere = a.label();
        a.jump(JA, 0, 0, 0, nowhere);
        assert!(a.finish().is_none());
    }

    #[test]
    fn attributes_have_the_kernels_layout() {
        // Offsets of union bpf_attr's members for each command.
        assert_eq!(std::mem::size_of::<MapCreate>(), 44);
        assert_eq!(std::mem::size_of::<MapUpdate>(), 32);
        assert_eq!(std::mem::offset_of!(ProgLoad, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoad, expected_attach_type), 68);
        assert_eq!(std::mem::size_of::<LinkCreate>(), 16);
        assert_eq!(std::mem::offset_of!(TestRun, repeat), 32);
    }
}
