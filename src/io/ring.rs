//! The faster AF_PACKET receive path: a memory-mapped TPACKET_V2 ring.
//! The kernel writes each frame into the next slot and flags it; qosd reads
//! the slots in order without a system call per frame, hands each back by
//! flipping its flag, and sleeps in `poll` only when the next slot is
//! empty.
//!
//! Why V2 and not V3: V3 hands frames over a block at a time, and a block
//! that is not full waits for its retire timer (1 ms at the least). For a
//! voice packet crossing an idle office gateway that is a millisecond of
//! added delay per direction; V2 hands every frame over at once.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Slot size: a full Ethernet frame plus the header the kernel puts first.
const FRAME_SIZE: usize = 2048;
/// Slots per 64 KiB block (the kernel allocates the ring in blocks).
const BLOCK_SIZE: usize = 1 << 16;
/// Blocks (8 MiB, 4096 slots, in all).
const BLOCK_NR: usize = 128;
const SLOTS: usize = BLOCK_SIZE * BLOCK_NR / FRAME_SIZE;

// Offsets in `struct tpacket2_hdr` (linux/if_packet.h).
const TP_STATUS: usize = 0;
const TP_LEN: usize = 4;
const TP_SNAPLEN: usize = 8;
const TP_MAC: usize = 12;
const TP_VLAN_TCI: usize = 24;
const TP_VLAN_TPID: usize = 26;

/// A frame in the ring, as the kernel described it.
#[derive(Debug)]
pub struct RingFrame<'a> {
    /// The bytes captured (a VLAN tag stripped into `vlan_tci` when flagged).
    pub data: &'a [u8],
    /// The frame's real length (more than `data` when truncated).
    pub len: usize,
    /// TP_STATUS_* flags (VLAN valid, checksum not ready...).
    pub status: u32,
    /// Stripped VLAN TCI.
    pub vlan_tci: u16,
    /// Stripped VLAN TPID.
    pub vlan_tpid: u16,
}

/// The mapped receive ring of one socket.
pub struct RxRing {
    map: NonNull<u8>,
    /// The next slot to read.
    slot: usize,
    /// The slot handed out last, to give back on the next call.
    pending: Option<usize>,
}

// SAFETY: the mapping is owned by this value and only touched through
// `&mut self`; the kernel side is synchronised through each slot's status.
unsafe impl Send for RxRing {}

fn setsockopt<T>(fd: i32, opt: i32, value: &T) -> io::Result<()> {
    // SAFETY: passes a valid pointer to `value` and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            opt,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn slot_offset(i: usize) -> usize {
    // Slots never straddle blocks: FRAME_SIZE divides BLOCK_SIZE.
    i * FRAME_SIZE
}

impl RxRing {
    /// Sets up a TPACKET_V2 ring on the (bound) AF_PACKET socket `fd`.
    pub fn new(fd: i32) -> io::Result<Self> {
        let version: libc::c_int = 1; // TPACKET_V2
        setsockopt(fd, libc::PACKET_VERSION, &version)?;
        let req = libc::tpacket_req {
            tp_block_size: BLOCK_SIZE as u32,
            tp_block_nr: BLOCK_NR as u32,
            tp_frame_size: FRAME_SIZE as u32,
            tp_frame_nr: SLOTS as u32,
        };
        setsockopt(fd, libc::PACKET_RX_RING, &req)?;
        // SAFETY: maps the ring the kernel just allocated for this socket.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BLOCK_SIZE * BLOCK_NR,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(RxRing {
            map,
            slot: 0,
            pending: None,
        })
    }

    fn read_u32(&self, off: usize) -> u32 {
        if off + 4 > BLOCK_SIZE * BLOCK_NR {
            return 0;
        }
        // SAFETY: `off` is within the mapping (checked above) and aligned
        // (slot headers are 16-byte aligned, fields at multiples of 4).
        unsafe { std::ptr::read_volatile(self.map.as_ptr().add(off).cast::<u32>()) }
    }

    fn read_u16(&self, off: usize) -> u16 {
        if off + 2 > BLOCK_SIZE * BLOCK_NR {
            return 0;
        }
        // SAFETY: within the mapping (checked above).
        unsafe { std::ptr::read_unaligned(self.map.as_ptr().add(off).cast::<u16>()) }
    }

    /// The status word of slot `i`, shared with the kernel. The kernel
    /// fills a slot and then sets TP_STATUS_USER with a release barrier
    /// (`smp_wmb` before `__packet_set_status`); qosd reads the status with
    /// Acquire before it reads the slot, and hands the slot back with a
    /// Release store after it is done reading, as the kernel's own
    /// examples (tools/testing/selftests/net/psock_tpacket.c) do with
    /// `__atomic` builtins.
    fn status_word(&self, i: usize) -> &AtomicU32 {
        // `i` is always below SLOTS (the slot index wraps modulo SLOTS).
        let off = slot_offset(i % SLOTS) + TP_STATUS;
        // SAFETY: the offset is within the mapping, 4-byte aligned (slots
        // start at multiples of FRAME_SIZE, the status is their first
        // field), the mapping outlives `&self`, and the kernel only
        // accesses the word atomically.
        unsafe { AtomicU32::from_ptr(self.map.as_ptr().add(off).cast::<u32>()) }
    }

    /// The next frame, if the kernel has written one. A frame stays valid
    /// until the next call, which gives its slot back.
    pub fn next_frame(&mut self) -> Option<RingFrame<'_>> {
        if let Some(done) = self.pending.take() {
            self.status_word(done)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        }
        let hdr = slot_offset(self.slot);
        let status = self.status_word(self.slot).load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return None;
        }
        let len = self.read_u32(hdr + TP_LEN) as usize;
        let snaplen = self.read_u32(hdr + TP_SNAPLEN) as usize;
        let mac = usize::from(self.read_u16(hdr + TP_MAC));
        let tci = self.read_u16(hdr + TP_VLAN_TCI);
        let tpid = self.read_u16(hdr + TP_VLAN_TPID);
        self.pending = Some(self.slot);
        self.slot = (self.slot + 1) % SLOTS;
        // A descriptor pointing outside its slot would be a kernel bug;
        // treat the frame as empty rather than read past it.
        let (start, snaplen) = if mac + snaplen <= FRAME_SIZE {
            (hdr + mac, snaplen)
        } else {
            (hdr, 0)
        };
        // SAFETY: [start, start + snaplen) lies within this slot, which the
        // kernel leaves alone until its status is handed back.
        let data = unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(start), snaplen) };
        Some(RingFrame {
            data,
            len,
            status,
            vlan_tci: tci,
            vlan_tpid: tpid,
        })
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe { libc::munmap(self.map.as_ptr().cast(), BLOCK_SIZE * BLOCK_NR) };
    }
}
