//! The CRYPTO stream of a client's Initial packets, reassembled by offset
//! from the frames of the decrypted packets.

use super::CRYPTO_CAP;
use super::header::{length, varint};

/// The CRYPTO stream as received so far: bytes by offset and which ones
/// arrived. Both grow to cover the highest offset received, up to
/// [`CRYPTO_CAP`].
pub(super) struct CryptoStream {
    /// The bytes, by stream offset.
    pub(super) data: Vec<u8>,
    /// One bit per byte of `data`.
    have: Vec<u64>,
    /// A growth was refused: bytes were lost, the stream cannot complete.
    pub(super) refused: bool,
}

impl CryptoStream {
    pub(super) fn new() -> Self {
        CryptoStream {
            data: Vec::new(),
            have: Vec::new(),
            refused: false,
        }
    }

    /// Bytes allocated.
    pub(super) fn heap_bytes(&self) -> usize {
        self.data.capacity() + self.have.capacity() * size_of::<u64>()
    }

    /// Makes room for bytes up to `end` (a multiple of 64 past it), if
    /// `allow` grants the bytes that takes.
    fn grow_to(&mut self, end: usize, allow: &mut dyn FnMut(usize) -> bool) -> bool {
        if end <= self.data.len() {
            return true;
        }
        let len = end.next_multiple_of(64).min(CRYPTO_CAP);
        let words = len / 64;
        let more = len.saturating_sub(self.data.capacity())
            + words.saturating_sub(self.have.capacity()) * size_of::<u64>();
        if !allow(more) {
            self.refused = true;
            return false;
        }
        // Exact: the caller accounted exactly these capacities.
        self.data.reserve_exact(len - self.data.len());
        self.data.resize(len, 0);
        self.have.reserve_exact(words - self.have.len());
        self.have.resize(words, 0);
        true
    }

    /// Stores `bytes` at stream `offset`, dropping what falls past the cap
    /// (or all of it when `allow` refuses the memory).
    pub(super) fn insert(
        &mut self,
        offset: u64,
        bytes: &[u8],
        allow: &mut dyn FnMut(usize) -> bool,
    ) {
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        if start >= CRYPTO_CAP || bytes.is_empty() {
            return;
        }
        let end = start.saturating_add(bytes.len()).min(CRYPTO_CAP);
        if !self.grow_to(end, allow) {
            return;
        }
        let (Some(dst), Some(src)) = (self.data.get_mut(start..end), bytes.get(..end - start))
        else {
            return;
        };
        dst.copy_from_slice(src);
        for i in start..end {
            if let Some(w) = self.have.get_mut(i / 64) {
                *w |= 1 << (i % 64);
            }
        }
    }

    /// How many bytes from offset 0 have all arrived.
    pub(super) fn prefix(&self) -> usize {
        let mut n = 0;
        for &w in self.have.iter() {
            if w == u64::MAX {
                n += 64;
            } else {
                return n + w.trailing_ones() as usize;
            }
        }
        n
    }
}

/// Walks the frames of a decrypted Initial payload, storing CRYPTO data
/// (frame type `crypto_frame`).
/// `None` on a malformed payload or a frame type an Initial packet may not
/// carry (frames before it are kept).
pub(super) fn walk_frames(
    mut payload: &[u8],
    crypto_frame: u8,
    crypto: &mut CryptoStream,
    allow: &mut dyn FnMut(usize) -> bool,
) -> Option<()> {
    // Each turn consumes at least the frame-type byte.
    while let Some((&ty, rest)) = payload.split_first() {
        payload = rest;
        match ty {
            0x00 | 0x01 => {} // PADDING, PING
            0x02 | 0x03 => {
                // ACK: largest, delay, range count, first range, ranges.
                let (_, r) = varint(payload)?;
                let (_, r) = varint(r)?;
                let (count, r) = varint(r)?;
                let (_, mut r) = varint(r)?;
                // Each range consumes at least two bytes, or fails.
                let mut left = count;
                while left > 0 {
                    let (_, r1) = varint(r)?;
                    let (_, r2) = varint(r1)?;
                    r = r2;
                    left -= 1;
                }
                if ty == 0x03 {
                    for _ in 0..3 {
                        (_, r) = varint(r)?;
                    }
                }
                payload = r;
            }
            t if t == crypto_frame => {
                let (offset, r) = varint(payload)?;
                let (len, r) = varint(r)?;
                let (data, r) = r.split_at_checked(length(len, r.len())?)?;
                crypto.insert(offset, data, allow);
                payload = r;
            }
            0x1c => {
                // CONNECTION_CLOSE: error code, frame type, reason.
                let (_, r) = varint(payload)?;
                let (_, r) = varint(r)?;
                let (len, r) = varint(r)?;
                payload = r.get(length(len, r.len())?..)?;
            }
            _ => return None,
        }
    }
    Some(())
}
