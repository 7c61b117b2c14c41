//! The consumer side of the doorbell's BPF ring buffer: qosd never reads
//! the records, it only needs to know that some came (a voice frame is on
//! its way into the AF_XDP socket) and to mark them read, so that `poll`
//! reports the buffer readable again at the next one.
//!
//! The kernel's layout (`kernel/bpf/ringbuf.c`): page 0 holds the
//! consumer position (the only page user space may write), page 1 the
//! producer position; both count bytes since the buffer was created.

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use super::program::BELL_RECORD;

/// The two position pages of one ring buffer, mapped.
pub struct BellRing {
    consumer: NonNull<AtomicU64>,
    producer: NonNull<AtomicU64>,
    page: usize,
}

// SAFETY: two shared mappings owned by this value; the positions are read
// and written atomically, as the kernel does.
unsafe impl Send for BellRing {}

impl BellRing {
    /// Maps the positions of the ring buffer `fd`.
    pub fn map(fd: RawFd) -> io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let map = |prot, offset: usize| -> io::Result<NonNull<AtomicU64>> {
            // SAFETY: a fresh shared mapping of one page of the ring
            // buffer; the kernel checks the offset and the protection.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    page,
                    prot,
                    libc::MAP_SHARED,
                    fd,
                    libc::off_t::try_from(offset).unwrap_or(0),
                )
            };
            if p == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap gave null"))
        };
        let consumer = map(libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = match map(libc::PROT_READ, page) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: the page mapped just above, not used since.
                unsafe { libc::munmap(consumer.as_ptr().cast(), page) };
                return Err(e);
            }
        };
        Ok(BellRing {
            consumer,
            producer,
            page,
        })
    }

    /// Marks every record so far read: how many rings there were since
    /// the last call.
    pub fn drain(&mut self) -> u64 {
        // SAFETY: both pointers are page-aligned positions inside live
        // mappings (until drop), written by the kernel and us atomically.
        let (consumer, producer) = unsafe { (self.consumer.as_ref(), self.producer.as_ref()) };
        let end = producer.load(Ordering::Acquire);
        let start = consumer.load(Ordering::Relaxed);
        if end == start {
            return 0;
        }
        consumer.store(end, Ordering::Release);
        end.wrapping_sub(start) / BELL_RECORD
    }
}

impl Drop for BellRing {
    fn drop(&mut self) {
        // SAFETY: the two pages mapped in `map`, no longer used.
        unsafe {
            libc::munmap(self.consumer.as_ptr().cast(), self.page);
            libc::munmap(self.producer.as_ptr().cast(), self.page);
        }
    }
}
