//! Where the daemon's download thread, which runs [`Autorate`](super::Autorate)
//! (it sees the answers to the probes), tells the upload thread its rate
//! and the control plane what the link looks like; and where the upload
//! thread tells it how much it sent. A few atomics read once per loop of
//! each thread, and a status written five times a second.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::WanStatus;
use crate::config::{Direction, Rate};
use crate::wan::Source;

/// What the control plane shows of the link.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Published {
    /// Upload, download (by [`Direction::index`]).
    pub status: [WanStatus; 2],
    /// Round trips measured since start, by [`Source::index`].
    pub samples: [u64; Source::ALL.len()],
}

/// The shared board.
#[derive(Debug, Default)]
pub struct Board {
    /// Shaping rate per direction, bit/s (0: not set yet).
    rates: [AtomicU64; 2],
    /// The upload engine's sent, arrived and TCP payload bytes, since
    /// start.
    upload: [AtomicU64; 3],
    published: Mutex<Published>,
}

impl Board {
    /// The rate autorate set for `dir`, once it did.
    pub fn rate(&self, dir: Direction) -> Option<Rate> {
        let r = self.rates.get(dir.index())?.load(Ordering::Relaxed);
        (r != 0).then(|| Rate::from_bps(r))
    }

    /// Sets `dir`'s rate.
    pub fn set_rate(&self, dir: Direction, rate: Rate) {
        if let Some(r) = self.rates.get(dir.index()) {
            r.store(rate.bps().max(1), Ordering::Relaxed);
        }
    }

    /// The upload engine's (sent, arrived, TCP payload) bytes, since
    /// start.
    pub fn upload_totals(&self) -> [u64; 3] {
        self.upload.each_ref().map(|a| a.load(Ordering::Relaxed))
    }

    /// Records the upload engine's (sent, arrived, TCP payload) bytes.
    pub fn set_upload_totals(&self, totals: [u64; 3]) {
        for (a, v) in self.upload.iter().zip(totals) {
            a.store(v, Ordering::Relaxed);
        }
    }

    /// What the control plane shows.
    pub fn published(&self) -> Published {
        self.published
            .lock()
            .map(|p| *p)
            .unwrap_or_else(|e| *e.into_inner())
    }

    /// Replaces what the control plane shows.
    pub fn publish(&self, p: Published) {
        match self.published.lock() {
            Ok(mut g) => *g = p,
            Err(e) => *e.into_inner() = p,
        }
    }
}
