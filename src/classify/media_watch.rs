//! Watching a settled call for its lifetime: a call that turns into a
//! video call, or a video-capable service's flow that carries audio only,
//! moves between voice and video. Decided by what each direction carries
//! over windows of a second or more (rate and packet size), since the
//! first packets cannot know what the call will become.
//!
//! The cost stays off the common packet: a watched flow's packet checks
//! whether its direction's byte count crossed a multiple of
//! [`MEDIA_CHECK_BYTES`] (an audio stream does every two seconds or so, a
//! video stream a few times a second), and only then takes the flow's
//! lock to look at the window.

use super::state::FlowClass;
use super::{BehaviourTargets, Classifier};
use crate::config::{CategoryId, Direction};
use crate::time::Instant;

/// Bytes of one direction between two looks at a watched flow.
pub const MEDIA_CHECK_BYTES: u64 = 16 * 1024;

/// Shortest window a decision is taken on: shorter bursts (a key frame, a
/// burst of retransmissions) say little about the call.
const MIN_WINDOW_NS: u64 = 1_000_000_000;

/// At or above this rate (bits/s of frames) a direction is video: more
/// than any voice codec a call uses (Opus in calls runs 6-128 kbit/s).
const VIDEO_BPS: u64 = 320_000;
/// At or above this mean frame size a direction of at least
/// [`VIDEO_SMALL_BPS`] is video (video fills packets to the path's MTU,
/// audio frames are a few hundred bytes).
const VIDEO_FRAME_BYTES: u64 = 600;
/// See [`VIDEO_FRAME_BYTES`]: a low-rate screen share or a paused camera.
const VIDEO_SMALL_BPS: u64 = 96_000;
/// Below this rate and [`VOICE_FRAME_BYTES`] a direction is voice.
const VOICE_BPS: u64 = 200_000;
/// See [`VOICE_BPS`]: a call's audio frames stay under this (Opus at its
/// highest rate in 20 ms frames is about 360 bytes with its headers); a
/// mean above it at a low rate is a mix of small frames and full ones,
/// audio with some video, and keeps what it was.
const VOICE_FRAME_BYTES: u64 = 400;

/// What a flow's watch remembers: per direction (by
/// [`Direction::index`]), whether it is watched and where its window
/// started.
#[derive(Debug, Default, Clone, Copy)]
pub struct MediaWatch {
    watched: [bool; 2],
    since_ns: [u64; 2],
    bytes: [u64; 2],
    packets: [u64; 2],
}

/// What one direction carried over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Carried {
    Voice,
    Video,
    /// Between the two: keep what it was.
    Either,
}

/// What `bytes` in `packets` frames over `window_ns` look like.
pub(super) fn carried(bytes: u64, packets: u64, window_ns: u64) -> Carried {
    let bps = u128::from(bytes) * 8 * 1_000_000_000 / u128::from(window_ns.max(1));
    let bps = u64::try_from(bps).unwrap_or(u64::MAX);
    let mean = bytes / packets.max(1);
    if bps >= VIDEO_BPS || (mean >= VIDEO_FRAME_BYTES && bps >= VIDEO_SMALL_BPS) {
        Carried::Video
    } else if bps < VOICE_BPS && mean < VOICE_FRAME_BYTES {
        Carried::Voice
    } else {
        Carried::Either
    }
}

impl MediaWatch {
    /// Starts watching direction `dir` from its counts at `now`.
    pub fn start(&mut self, dir: Direction, now: Instant, bytes: u64, packets: u64) {
        let i = dir.index();
        if let (Some(w), Some(s), Some(b), Some(p)) = (
            self.watched.get_mut(i),
            self.since_ns.get_mut(i),
            self.bytes.get_mut(i),
            self.packets.get_mut(i),
        ) {
            (*w, *s, *b, *p) = (true, now.as_nanos(), bytes, packets);
        }
    }

    /// Looks at direction `dir`'s window ending `now` with the flow's
    /// counts: what it carried, once the window is long enough (then the
    /// next window starts).
    fn look(&mut self, dir: Direction, now: Instant, bytes: u64, packets: u64) -> Option<Carried> {
        let i = dir.index();
        let (Some(true), Some(s), Some(b), Some(p)) = (
            self.watched.get(i).copied(),
            self.since_ns.get_mut(i),
            self.bytes.get_mut(i),
            self.packets.get_mut(i),
        ) else {
            return None;
        };
        let window = now.as_nanos().saturating_sub(*s);
        if window < MIN_WINDOW_NS {
            return None;
        }
        let seen = carried(bytes.saturating_sub(*b), packets.saturating_sub(*p), window);
        (*s, *b, *p) = (now.as_nanos(), bytes, packets);
        Some(seen)
    }
}

impl BehaviourTargets {
    /// Whether `cat` is one a call moves between.
    pub(super) fn is_media(&self, cat: CategoryId) -> bool {
        self.voice == Some(cat) || self.video == Some(cat)
    }
}

impl Classifier {
    /// A watched direction's byte count (after the packet of `len` bytes
    /// just recorded) crossed a multiple of [`MEDIA_CHECK_BYTES`].
    #[inline]
    pub(super) fn media_check_due(own_bytes: u64, len: u64) -> bool {
        own_bytes / MEDIA_CHECK_BYTES != own_bytes.saturating_sub(len) / MEDIA_CHECK_BYTES
    }

    /// Looks at a watched flow's direction `dir` and moves it between
    /// voice and video when its last window says so.
    pub(super) fn media_recheck(
        &self,
        c: &mut FlowClass,
        dir: Direction,
        now: Instant,
        bytes: u64,
        packets: u64,
    ) {
        let (Some(voice), Some(video)) = (self.targets.voice, self.targets.video) else {
            return;
        };
        let seen = c
            .media_watch
            .as_mut()
            .and_then(|w| w.look(dir, now, bytes, packets));
        let target = match seen {
            Some(Carried::Voice) => voice,
            Some(Carried::Video) => video,
            Some(Carried::Either) | None => return,
        };
        *dir.pick_mut(&mut c.category) = target;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn rates_and_sizes_tell_audio_from_video() {
        // Opus at 50 packets/s of 160-byte frames: 64 kbit/s.
        assert_eq!(carried(50 * 160, 50, SEC), Carried::Voice);
        // 1.5 Mbit/s of 1100-byte frames.
        assert_eq!(carried(170 * 1100, 170, SEC), Carried::Video);
        // A slide share: 20 full frames a second, 190 kbit/s.
        assert_eq!(carried(20 * 1200, 20, SEC), Carried::Video);
        // Many small frames at 260 kbit/s (a high-rate codec, FEC): neither.
        assert_eq!(carried(100 * 325, 100, SEC), Carried::Either);
        // A third of the frames full, at 180 kbit/s: audio and some video
        // sharing a connection: neither.
        assert_eq!(carried(50 * 457, 50, SEC), Carried::Either);
        // Over two seconds, the rate is per second.
        assert_eq!(carried(2 * 50 * 160, 100, 2 * SEC), Carried::Voice);
        // Nothing at all, or no time: no panic, voice-like.
        assert_eq!(carried(0, 0, 0), Carried::Voice);
    }

    #[test]
    fn a_window_shorter_than_a_second_decides_nothing() {
        let mut w = MediaWatch::default();
        let t0 = Instant::from_nanos(5 * SEC);
        w.start(Direction::Upload, t0, 1000, 10);
        let early = Instant::from_nanos(5 * SEC + SEC / 2);
        assert_eq!(w.look(Direction::Upload, early, 400_000, 400), None);
        let later = Instant::from_nanos(6 * SEC);
        assert_eq!(
            w.look(Direction::Upload, later, 200_000, 200),
            Some(Carried::Video)
        );
        // The next window starts there.
        let next = Instant::from_nanos(7 * SEC);
        assert_eq!(
            w.look(Direction::Upload, next, 208_000, 250),
            Some(Carried::Voice)
        );
        // An unwatched direction is never looked at.
        assert_eq!(w.look(Direction::Download, next, 1 << 30, 1), None);
    }
}
