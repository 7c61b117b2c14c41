//! One direction of the data path on its own OS thread: receive on one
//! interface, run the engine, transmit on the other when the shaper
//! releases frames, sleep in `poll` until the next frame is due or arrives.
//!
//! Nothing here allocates per frame in steady state (buffers come from a
//! pool), logs per frame or touches Prometheus: counters are plain fields,
//! copied into a shared snapshot ten times a second for the control plane.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{Config, Direction};
use crate::engine::frame::{Frame, FramePool};
use crate::engine::{DirectionEngine, EngineCounters};
use crate::io::afpacket::{HEADROOM, RxSocket, TX_BATCH, TxSocket};
use crate::shaper::{CategoryCounters, Shaper, ShaperConfig};
use crate::time::Instant;

/// Most frames received per loop before the queue is served again.
const RX_BATCH: usize = 64;
/// Longest sleep when idle: bounds shutdown and snapshot latency.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// How often counters are published.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// Shortest sleep worth taking without watching the socket (below it, a
/// wake-up for an arrival costs about as much as the timer's).
const MIN_DEAF: Duration = Duration::from_micros(20);
/// Longest: at 1 Gbit/s of 64-byte frames the receive queue (4 096 ring
/// slots) takes about 3 ms to fill.
const MAX_DEAF: Duration = Duration::from_millis(1);

/// The monotonic clock as [`Instant`]s (nanoseconds since boot).
pub fn now() -> Instant {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Instant::from_nanos(
        (ts.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec as u64),
    )
}

/// Frame counts at the interfaces, for one direction.
#[derive(Debug, Clone, Default)]
pub struct IoCounters {
    /// Frames received on the ingress interface.
    pub rx_frames: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames handed to the egress interface.
    pub tx_frames: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames the egress interface refused (queue full, too large...).
    pub tx_errors: u64,
    /// Receive calls that failed.
    pub rx_errors: u64,
    /// Frames larger than the receive buffer (offloads left on): dropped.
    pub oversized: u64,
    /// Their bytes (as far as received).
    pub oversized_bytes: u64,
    /// Bytes of the frames the egress interface refused.
    pub tx_error_bytes: u64,
    /// Frames the kernel dropped before qosd read them (its socket queue
    /// was full: qosd fell behind).
    pub kernel_drops: u64,
    /// Frames whose partial TCP/UDP checksum qosd completed.
    pub checksum_completed: u64,
    /// Frames the shaper dropped (any reason; by category in its counters).
    pub shaper_dropped: u64,
}

/// What one direction publishes for metrics and the API.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Interface counters.
    pub io: IoCounters,
    /// Engine counters.
    pub engine: EngineCounters,
    /// Shaper counters by category, in the layout of `config`.
    pub categories: Vec<CategoryCounters>,
    /// What categories removed by reloads had counted (added to the
    /// direction's totals, which must never go back).
    pub retired: CategoryCounters,
    /// The configuration whose categories `categories` follows (it can lag
    /// the installed one for a moment after a reload).
    pub config: Option<Arc<Config>>,
    /// When it was taken.
    pub at: Instant,
    /// The thread is running.
    pub running: bool,
}

/// The shared place a direction publishes its snapshot.
pub type SnapshotCell = Arc<Mutex<Snapshot>>;

/// One direction's thread state.
pub struct Datapath {
    /// Which way.
    pub dir: Direction,
    /// Classification and shaping.
    pub engine: DirectionEngine<Shaper<Frame>>,
    /// Where frames come from.
    pub rx: RxSocket,
    /// Where they go.
    pub tx: TxSocket,
    /// Buffers.
    pub pool: FramePool,
    /// Counters.
    pub io: IoCounters,
    /// Published snapshot.
    pub snapshot: SnapshotCell,
}

impl Datapath {
    /// Runs until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) {
        // Precise wake-ups for pacing slow links: the default 50 us timer
        // slack would add jitter to every sleep.
        // SAFETY: prctl on the calling thread.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000, 0, 0, 0) };
        let mut next_publish = now();
        self.publish(now(), true);
        while !stop.load(Ordering::Relaxed) {
            let t = now();
            if let Some(cfg) = self.engine.refresh() {
                let origin = self.engine.category_origin().to_vec();
                self.engine.queue_mut().reconfigure_mapped(
                    &shaper_config(&cfg, self.dir, self.pool.buffer_size()),
                    &origin,
                );
                // Counters now follow the new layout: label them with it.
                self.publish(now(), true);
            }
            self.receive_batch(t);
            let t = now();
            self.transmit_due(t);
            if t >= next_publish {
                self.publish(t, true);
                next_publish = t + PUBLISH_EVERY;
            }
            let t = now();
            let wait = match self.engine.next_wakeup() {
                Some(due) if due <= t => continue,
                Some(due) => Duration::from_nanos(due.nanos_since(t)).min(IDLE_POLL),
                None => IDLE_POLL,
            };
            // While the link is still busy with what it sent, nothing that
            // arrives can leave earlier: let arrivals wait in the socket's
            // queue instead of waking for each (half the wake-ups under
            // load), but never for long, so a burst cannot overflow it.
            let busy = Duration::from_nanos(self.engine.queue().link_free_at().nanos_since(t));
            if busy >= MIN_DEAF && wait >= MIN_DEAF {
                self.sleep(wait.min(busy).min(MAX_DEAF), false);
            } else {
                self.sleep(wait, true);
            }
        }
        self.publish(now(), false);
    }

    fn receive_batch(&mut self, t: Instant) {
        for _ in 0..RX_BATCH {
            let mut buf = self.pool.get();
            match self.rx.recv(&mut buf) {
                Ok(Some(r)) => {
                    self.io.rx_frames += 1;
                    self.io.rx_bytes += r.len as u64;
                    if r.truncated {
                        self.io.oversized += 1;
                        self.io.oversized_bytes += r.len as u64;
                        self.pool.put(buf);
                        continue;
                    }
                    if r.checksum_completed {
                        self.io.checksum_completed += 1;
                    }
                    self.engine.ingress(Frame::filled(buf, r.start, r.len), t);
                }
                Ok(None) => {
                    self.pool.put(buf);
                    break;
                }
                Err(_) => {
                    self.io.rx_errors += 1;
                    self.pool.put(buf);
                    break;
                }
            }
        }
        self.recycle_dropped();
    }

    fn transmit_due(&mut self, t: Instant) {
        let mut batch: [Option<Frame>; TX_BATCH] = std::array::from_fn(|_| None);
        loop {
            let mut n = 0;
            while n < TX_BATCH {
                let Some(frame) = self.engine.dequeue(t) else {
                    break;
                };
                if let Some(slot) = batch.get_mut(n) {
                    *slot = Some(frame);
                }
                n += 1;
            }
            if n == 0 {
                break;
            }
            let mut views: [&[u8]; TX_BATCH] = [&[]; TX_BATCH];
            for (v, f) in views.iter_mut().zip(batch.iter()).take(n) {
                *v = f.as_ref().map(Frame::bytes).unwrap_or_default();
            }
            let mut sent = [false; TX_BATCH];
            self.tx
                .send_batch(views.get(..n).unwrap_or_default(), &mut sent);
            for (slot, ok) in batch.iter_mut().zip(sent).take(n) {
                if let Some(frame) = slot.take() {
                    let len = frame.bytes().len() as u64;
                    if ok {
                        self.io.tx_frames += 1;
                        self.io.tx_bytes += len;
                    } else {
                        self.io.tx_errors += 1;
                        self.io.tx_error_bytes += len;
                    }
                    self.pool.put(frame.into_buffer());
                }
            }
            if n < TX_BATCH {
                break;
            }
        }
        self.recycle_dropped();
    }

    fn recycle_dropped(&mut self) {
        let (pool, io) = (&mut self.pool, &mut self.io);
        self.engine.drain_dropped(&mut |f, _| {
            io.shaper_dropped += 1;
            pool.put(f.into_buffer());
        });
    }

    /// Sleeps for `wait`, or until a frame arrives when `watch` is set.
    fn sleep(&self, wait: Duration, watch: bool) {
        let mut pfd = libc::pollfd {
            fd: self.rx.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: one valid pollfd (or none) and a timespec for the call's
        // duration.
        unsafe { libc::ppoll(&mut pfd, libc::nfds_t::from(watch), &ts, std::ptr::null()) };
    }

    fn publish(&mut self, t: Instant, running: bool) {
        self.io.kernel_drops += self.rx.kernel_drops();
        // A reader that panicked while holding the cell leaves a snapshot
        // that is still whole: keep publishing rather than freeze the
        // metrics and the readiness check for good.
        {
            let mut s = self
                .snapshot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.io.clone_from(&self.io);
            s.engine.clone_from(self.engine.counters());
            s.categories
                .clone_from_slice_or_resize(self.engine.category_counters());
            s.retired.clone_from(self.engine.queue().retired());
            if !s
                .config
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(c, self.engine.config()))
            {
                s.config = Some(Arc::clone(self.engine.config()));
            }
            s.at = t;
            s.running = running;
        }
    }
}

/// `clone_from` for a Vec whose length may change across reloads.
trait CloneFromSlice<T> {
    fn clone_from_slice_or_resize(&mut self, src: &[T]);
}

impl<T: Clone + Default> CloneFromSlice<T> for Vec<T> {
    fn clone_from_slice_or_resize(&mut self, src: &[T]) {
        self.resize_with(src.len(), T::default);
        for (d, s) in self.iter_mut().zip(src) {
            d.clone_from(s);
        }
    }
}

/// Error from a send that only means "try later".
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// The shaper of one direction of the daemon. Every queued frame holds a
/// whole receive buffer, so the packet limit is what the memory budget
/// buys in buffers: a flood of tiny frames cannot pin more memory than
/// the budget.
pub fn shaper_config(cfg: &crate::config::Config, dir: Direction, buffer: usize) -> ShaperConfig {
    let mut sc = ShaperConfig::from_config(cfg, dir);
    sc.packet_limit = (sc.memory_limit / buffer.max(64) as u64).max(1024);
    sc
}

/// Receive buffer size for frames up to `max_frame` bytes.
pub fn buffer_size(max_frame: usize) -> usize {
    max_frame + HEADROOM
}
