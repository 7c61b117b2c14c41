//! The faster AF_PACKET receive path: a TPACKET_V3 ring mapped into qosd's
//! memory. The kernel fills blocks of frames; qosd walks them without a
//! system call per frame and hands each block back when done, sleeping in
//! `poll` only when no block is ready. The cost: a block that is not full
//! is handed over after `RETIRE_MS`, which can delay a lone frame by up to
//! that long.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{Ordering, fence};

/// Bytes per block.
const BLOCK_SIZE: usize = 1 << 20;
/// Blocks in the ring (8 MiB in all).
const BLOCK_NR: usize = 8;
/// Frame slot size the kernel is told about (must divide the block).
const FRAME_SIZE: usize = 2048;
/// A partly filled block is handed to qosd after this many milliseconds.
pub const RETIRE_MS: u32 = 1;

// Offsets in `struct tpacket_block_desc` (version, offset_to_priv, then
// `tpacket_hdr_v1`) and `struct tpacket3_hdr` (linux/if_packet.h).
const BLOCK_STATUS: usize = 8;
const NUM_PKTS: usize = 12;
const FIRST_PKT: usize = 16;
const PKT_NEXT: usize = 0;
const PKT_SNAPLEN: usize = 12;
const PKT_LEN: usize = 16;
const PKT_STATUS: usize = 20;
const PKT_MAC: usize = 24;
const PKT_VLAN_TCI: usize = 32;
const PKT_VLAN_TPID: usize = 36;

/// A frame in the ring, as the kernel described it.
#[derive(Debug)]
pub struct RingFrame<'a> {
    /// The bytes captured (VLAN tag stripped into `vlan_tci` when flagged).
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
    /// Block being read, frames left in it, offset of the next frame.
    block: usize,
    left: u32,
    next: usize,
}

// SAFETY: the mapping is owned by this value and only touched through
// `&mut self`; the kernel side is synchronised through block_status.
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

impl RxRing {
    /// Sets up a TPACKET_V3 ring on the (bound) AF_PACKET socket `fd`.
    pub fn new(fd: i32) -> io::Result<Self> {
        let version: libc::c_int = 2; // TPACKET_V3
        setsockopt(fd, libc::PACKET_VERSION, &version)?;
        let req = libc::tpacket_req3 {
            tp_block_size: BLOCK_SIZE as u32,
            tp_block_nr: BLOCK_NR as u32,
            tp_frame_size: FRAME_SIZE as u32,
            tp_frame_nr: (BLOCK_SIZE * BLOCK_NR / FRAME_SIZE) as u32,
            tp_retire_blk_tov: RETIRE_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
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
            block: 0,
            left: 0,
            next: 0,
        })
    }

    fn read_u32(&self, off: usize) -> u32 {
        if off + 4 > BLOCK_SIZE * BLOCK_NR {
            return 0;
        }
        // SAFETY: `off` is within the mapping (checked above).
        unsafe { std::ptr::read_volatile(self.map.as_ptr().add(off).cast::<u32>()) }
    }

    fn read_u16(&self, off: usize) -> u16 {
        if off + 2 > BLOCK_SIZE * BLOCK_NR {
            return 0;
        }
        // SAFETY: `off` is within the mapping (checked above).
        unsafe { std::ptr::read_unaligned(self.map.as_ptr().add(off).cast::<u16>()) }
    }

    fn block_base(&self) -> usize {
        self.block * BLOCK_SIZE
    }

    /// The next frame, if the kernel has handed one over. Frames of a block
    /// stay valid until the next call, which may return the block.
    pub fn next_frame(&mut self) -> Option<RingFrame<'_>> {
        if self.left == 0 {
            if self.next != 0 {
                // Done with this block: give it back, move on.
                fence(Ordering::Release);
                let off = self.block_base() + BLOCK_STATUS;
                // SAFETY: within the mapping; the kernel reads this word.
                unsafe {
                    std::ptr::write_volatile(
                        self.map.as_ptr().add(off).cast::<u32>(),
                        libc::TP_STATUS_KERNEL,
                    )
                };
                self.block = (self.block + 1) % BLOCK_NR;
                self.next = 0;
            }
            let base = self.block_base();
            if self.read_u32(base + BLOCK_STATUS) & libc::TP_STATUS_USER == 0 {
                return None;
            }
            fence(Ordering::Acquire);
            self.left = self.read_u32(base + NUM_PKTS);
            self.next = self.read_u32(base + FIRST_PKT) as usize;
            if self.left == 0 {
                // An empty block (timeout with nothing in it): hand it back.
                self.next = self.next.max(1);
                return self.next_frame_after_empty();
            }
        }
        let base = self.block_base();
        let hdr = base + self.next;
        let snaplen = self.read_u32(hdr + PKT_SNAPLEN) as usize;
        let len = self.read_u32(hdr + PKT_LEN) as usize;
        let status = self.read_u32(hdr + PKT_STATUS);
        let mac = usize::from(self.read_u16(hdr + PKT_MAC));
        let tci = self.read_u32(hdr + PKT_VLAN_TCI) as u16;
        let tpid = self.read_u16(hdr + PKT_VLAN_TPID);
        let next = self.read_u32(hdr + PKT_NEXT) as usize;
        self.left -= 1;
        self.next = if next == 0 {
            self.next.max(1)
        } else {
            self.next + next
        };
        let start = hdr + mac;
        if start + snaplen > base + BLOCK_SIZE {
            // A corrupt descriptor would point outside its block: skip the rest.
            self.left = 0;
            return None;
        }
        // SAFETY: [start, start + snaplen) lies within this block (checked),
        // which the kernel leaves alone until we hand it back.
        let data = unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(start), snaplen) };
        Some(RingFrame {
            data,
            len,
            status,
            vlan_tci: tci,
            vlan_tpid: tpid,
        })
    }

    fn next_frame_after_empty(&mut self) -> Option<RingFrame<'_>> {
        self.left = 0;
        self.next_frame()
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe { libc::munmap(self.map.as_ptr().cast(), BLOCK_SIZE * BLOCK_NR) };
    }
}
