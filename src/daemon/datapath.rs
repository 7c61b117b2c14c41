//! One direction of the data path on its own OS thread: receive on one
//! interface, run the engine, transmit on the other when the shaper
//! releases frames, sleep in `poll` until the next frame is due or arrives.
//!
//! Nothing here allocates per frame in steady state (buffers come from a
//! pool), logs per frame or touches Prometheus: counters are plain fields,
//! copied into a shared snapshot ten times a second for the control plane.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::ports::{self, Port, Reopen};
use crate::autorate::{Autorate, Board, Published, Totals};
use crate::config::{Config, Direction, Rate};
use crate::engine::DirectionEngine;
use crate::engine::frame::{Frame, FramePool};
use crate::io::afpacket::{HEADROOM, RxSocket, TX_BATCH, TxOutcome, TxSocket};
use crate::io::link::LinkProbe;
use crate::shaper::{Shaper, ShaperConfig};
use crate::telemetry::{IoCounters, PortHealth, PortState, SnapshotCell, now};
use crate::time::Instant;

/// Most descriptors one `poll` watches: the AF_XDP sockets of every
/// receive queue and the packet socket.
const MAX_POLL: usize = crate::io::xdp::MAX_QUEUES + 1;
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
/// Under a backlog on a busy link, and while no voice frame is due,
/// departures are sent at most this often, several at a time: the shaper's
/// buckets save up at least `shaper::DEFAULT_BURST` (1 ms) of credit, so
/// waking this late loses no rate, and the thread wakes once per this time
/// instead of once per frame (a 1500-byte frame leaves every 255 us at
/// 47 Mbit/s). A voice frame arriving meanwhile would wait for the wake-up
/// (up to this long), so around the times a call's next frames are due
/// (`engine::cadence`) every departure wakes the thread.
const COALESCE: Duration = Duration::from_micros(500);
// A coalesced sleep is a deaf one: the receive queue bounds both.
const _: () = assert!(COALESCE.as_nanos() <= MAX_DEAF.as_nanos());
/// How often the download thread hands the WAN-delay samples to autorate
/// (which decides every 200 ms).
const AUTORATE_EVERY: Duration = Duration::from_millis(20);
/// At most one log line about the rate per this long...
const RATE_LOG_EVERY: Duration = Duration::from_secs(10);
/// ...and only for a change of at least this share since the last one.
const RATE_LOG_CHANGE: f64 = 0.2;

/// One direction's thread state.
pub struct Datapath {
    dir: Direction,
    engine: DirectionEngine<Shaper<Frame>>,
    /// Where frames come from.
    rx: Port<RxSocket>,
    /// Where they go.
    tx: Port<TxSocket>,
    probe: LinkProbe,
    reopen: Reopen,
    pool: FramePool,
    io: IoCounters,
    snapshot: SnapshotCell,
    /// A socket error suggests an interface changed: look before the next
    /// scheduled check.
    check_soon: bool,
    /// Rates between the threads, the link's status for the control plane.
    board: Arc<Board>,
    /// The download thread runs autorate: it sees the answers to probes.
    autorate: Option<AutorateRun>,
}

/// Autorate on the download thread, and its rate-limited log.
struct AutorateRun {
    autorate: Autorate,
    next: Instant,
    logged: (Instant, [Rate; 2]),
}

impl Datapath {
    /// One direction: frames from `rx`'s interface through `engine` to
    /// `tx`'s, in buffers of `buffer` bytes, publishing into `snapshot`.
    pub fn new(
        dir: Direction,
        engine: DirectionEngine<Shaper<Frame>>,
        (rx, tx): (Port<RxSocket>, Port<TxSocket>),
        reopen: Reopen,
        buffer: usize,
        (snapshot, board): (SnapshotCell, Arc<Board>),
    ) -> std::io::Result<Self> {
        let autorate = (dir == Direction::Download).then(|| {
            let a = Autorate::new(engine.config());
            let rates = Direction::BOTH.map(|d| a.rate(d));
            AutorateRun {
                autorate: a,
                next: now(),
                logged: (now(), rates),
            }
        });
        Ok(Datapath {
            board,
            autorate,
            dir,
            engine,
            rx,
            tx,
            probe: LinkProbe::new()?,
            reopen,
            pool: FramePool::new(buffer, 256),
            io: IoCounters::default(),
            snapshot,
            check_soon: false,
        })
    }

    /// Runs until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) {
        // Precise wake-ups for pacing slow links: the default 50 us timer
        // slack would add jitter to every sleep.
        // SAFETY: prctl on the calling thread.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000, 0, 0, 0) };
        let mut next_publish = now();
        let mut next_check = now();
        self.publish(now(), true);
        while !stop.load(Ordering::Relaxed) {
            let t = now();
            if t >= next_check || self.check_soon {
                self.check_soon = false;
                next_check = t + ports::CHECK_EVERY;
                if self.check_ports(t) {
                    // Tell the control plane (readiness) at once.
                    self.publish(t, true);
                }
            }
            let buffer = self.pool.buffer_size();
            if self
                .engine
                .refresh(|cfg, dir| shaper_config(cfg, dir, buffer))
                .is_some()
            {
                // Counters now follow the new layout: label them with it.
                self.publish(now(), true);
            }
            self.receive_batch(t);
            let t = now();
            self.follow_link(t);
            self.transmit_due(t);
            if t >= next_publish {
                self.publish(t, true);
                next_publish = t + PUBLISH_EVERY;
            }
            let t = now();
            let due = match self.engine.next_wakeup() {
                Some(due) if due <= t => continue,
                Some(due) => Some(Duration::from_nanos(due.nanos_since(t))),
                None => None,
            };
            // Frames AF_XDP already handed over but this loop has not read
            // yet (it reads RX_BATCH at a time): `poll` would not report
            // them.
            if self.rx.socket_mut().is_some_and(|rx| rx.has_pending()) {
                continue;
            }
            let busy = Duration::from_nanos(self.engine.queue().link_free_at().nanos_since(t));
            // Departures are held back only where no voice frame is due
            // (the longest deaf sleep ahead): one arriving then would wait.
            let coalesce = self.engine.urgent_calm(t, MAX_DEAF);
            let (wait, watch) = plan_sleep(due, busy, coalesce);
            self.sleep(wait, watch);
        }
        self.publish(now(), false);
    }

    /// Keeps the queue at the link's rate: the download thread runs
    /// autorate on what its engine measured (and the upload thread sent),
    /// the upload thread follows the rate it sets.
    fn follow_link(&mut self, t: Instant) {
        let buffer = self.pool.buffer_size();
        let queue_config = |cfg: &Config, dir| shaper_config(cfg, dir, buffer);
        let Some(run) = self.autorate.as_mut() else {
            let c = self.engine.counters();
            self.board
                .set_upload_totals([c.sent_bytes, c.arrived_bytes, c.tcp_payload_bytes]);
            if let Some(rate) = self.board.rate(self.dir) {
                self.engine.set_link_rate(rate, queue_config);
            }
            return;
        };
        if t < run.next {
            return;
        }
        run.next = t + AUTORATE_EVERY;
        let a = &mut run.autorate;
        a.reconfigure(self.engine.config());
        let c = self.engine.counters();
        let (sent, arrived, tcp) = (c.sent_bytes, c.arrived_bytes, c.tcp_payload_bytes);
        let outside_ns = c.isp_queue.throttled_ns;
        let Some(meter) = self.engine.wan_meter_mut() else {
            return;
        };
        let [up_sent, up_arrived, up_tcp] = self.board.upload_totals();
        let totals = Totals {
            sent: [up_sent, sent],
            arrived: [up_arrived, arrived],
            tcp_payload: [up_tcp, tcp],
            acked: meter.acked_bytes(),
            outside_ns,
        };
        a.step(t, &totals, meter);
        for d in Direction::BOTH {
            self.board.set_rate(d, a.rate(d));
        }
        self.engine.set_link_rate(a.rate(self.dir), queue_config);
        self.board.publish(Published {
            status: Direction::BOTH.map(|d| a.status(d)),
            samples: a.samples_by_source(),
        });
        log_rates(run, t);
    }

    /// Looks at both interfaces, re-opening what came back; true when a
    /// port changed state. Transitions are logged here: they are rare
    /// (at most one per port per check), never per frame.
    fn check_ports(&mut self, t: Instant) -> bool {
        let dir = self.dir.as_str();
        let mut changed = false;
        let reopens = (self.rx.health().reopens, self.tx.health().reopens);
        if let Some(old) = self.rx.check(&self.probe, &self.reopen, t) {
            log_transition(dir, self.rx.health(), old, reopens.0);
            changed = true;
        }
        if let Some(old) = self.tx.check(&self.probe, &self.reopen, t) {
            log_transition(dir, self.tx.health(), old, reopens.1);
            changed = true;
        }
        changed
    }

    fn receive_batch(&mut self, t: Instant) {
        let Some(rx) = self.rx.socket_mut() else {
            return;
        };
        for _ in 0..RX_BATCH {
            let mut buf = self.pool.get();
            match rx.recv(&mut buf) {
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
                    // ENETDOWN when the interface went down or away: the
                    // socket reports it once, so look now.
                    self.io.rx_errors += 1;
                    self.check_soon = true;
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
            // An egress that is down, without carrier or gone cannot take
            // them: drop (counted) rather than queue frames that would
            // leave stale when the link returns.
            let mut outcome = [TxOutcome::LinkDown; TX_BATCH];
            if let Some(tx) = self.tx.usable() {
                tx.send_batch(views.get(..n).unwrap_or_default(), &mut outcome);
                self.io.tx_retries += tx.take_retries();
                // The kernel says the link went down since the last look:
                // look now rather than at the next scheduled check.
                if outcome.iter().take(n).any(|o| *o == TxOutcome::LinkDown) {
                    self.check_soon = true;
                }
            }
            for (slot, result) in batch.iter_mut().zip(outcome).take(n) {
                if let Some(frame) = slot.take() {
                    let len = frame.bytes().len() as u64;
                    let io = &mut self.io;
                    let (frames, bytes) = match result {
                        TxOutcome::Sent => (&mut io.tx_frames, &mut io.tx_bytes),
                        TxOutcome::QueueFull => {
                            (&mut io.tx_queue_full, &mut io.tx_queue_full_bytes)
                        }
                        TxOutcome::LinkDown => (&mut io.egress_down, &mut io.egress_down_bytes),
                        TxOutcome::Refused => (&mut io.tx_errors, &mut io.tx_error_bytes),
                    };
                    *frames += 1;
                    *bytes += len;
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
        self.engine.drain_dropped(|f, _| {
            io.shaper_dropped += 1;
            pool.put(f.into_buffer());
        });
    }

    /// Sleeps for `wait`, or until a frame arrives when `watch` is set.
    fn sleep(&mut self, wait: Duration, watch: bool) {
        // Every receiving socket (one per queue with AF_XDP); none while
        // the ingress interface is gone: a timed sleep.
        let mut pfds = [libc::pollfd {
            fd: -1,
            events: libc::POLLIN,
            revents: 0,
        }; MAX_POLL];
        let mut n = 0;
        if watch && let Some(rx) = self.rx.socket_mut() {
            for (p, &fd) in pfds.iter_mut().zip(rx.poll_fds()) {
                p.fd = fd;
                n += 1;
            }
        }
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `n` valid pollfds (or none) and a timespec for the
        // call's duration.
        let ready =
            unsafe { libc::ppoll(pfds.as_mut_ptr(), n as libc::nfds_t, &ts, std::ptr::null()) };
        let failed = pfds.iter().take(n).any(|p| p.revents & libc::POLLERR != 0);
        if ready > 0 && failed {
            // The interface went down (or away): read the error, or every
            // poll returns at once from now on, and look at the interface.
            if let Some(rx) = self.rx.socket_mut()
                && rx.take_error().is_some()
            {
                self.io.rx_errors += 1;
            }
            self.check_soon = true;
        }
    }

    fn publish(&mut self, t: Instant, running: bool) {
        let backend = self.rx.socket_mut().map(|rx| {
            self.io.kernel_drops += rx.kernel_drops();
            rx.backend()
        });
        // A reader that panicked while holding the cell leaves a snapshot
        // that is still whole: keep publishing rather than freeze the
        // metrics and the readiness check for good.
        {
            let mut s = self
                .snapshot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.ports.resize_with(2, PortHealth::default);
            for (d, h) in s.ports.iter_mut().zip([self.rx.health(), self.tx.health()]) {
                d.clone_from(h);
            }
            s.io.clone_from(&self.io);
            s.engine.clone_from(self.engine.counters());
            s.categories
                .clone_from_slice_or_resize(self.engine.category_counters());
            s.retired.clone_from(self.engine.queue().retired());
            self.engine.hosts().copy_into(&mut s.hosts);
            s.accounting.clone_from(self.engine.accounting());
            if !s
                .config
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(c, self.engine.config()))
            {
                s.config = Some(Arc::clone(self.engine.config()));
            }
            s.at = t;
            s.running = running;
            s.backend = backend;
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

/// One info line for a large change of rate, at most every
/// [`RATE_LOG_EVERY`].
fn log_rates(run: &mut AutorateRun, t: Instant) {
    let a = &run.autorate;
    let now_rates = Direction::BOTH.map(|d| a.rate(d));
    let (_, before) = run.logged;
    if !rate_log_due(run.logged, now_rates, t) {
        return;
    }
    let describe = |d: Direction| {
        let s = a.status(d);
        let delay = s.delay.map_or_else(
            || "no samples".to_owned(),
            |x| format!("WAN delay {} ms", x.as_millis()),
        );
        format!(
            "{} {} (was {}, {delay})",
            d.as_str(),
            a.rate(d),
            d.pick(before)
        )
    };
    tracing::info!(
        "autorate: {}; {}",
        describe(Direction::Upload),
        describe(Direction::Download)
    );
    run.logged = (t, now_rates);
}

/// Whether the rates `now_rates` at `t` deserve a log line, the last one
/// having been `logged` (when, and the rates it showed): a direction moved
/// by [`RATE_LOG_CHANGE`] of its logged rate, and [`RATE_LOG_EVERY`] has
/// passed.
fn rate_log_due(logged: (Instant, [Rate; 2]), now_rates: [Rate; 2], t: Instant) -> bool {
    let (at, before) = logged;
    let moved = now_rates.iter().zip(before).any(|(n, b)| {
        (n.bps() as f64 - b.bps() as f64).abs() >= RATE_LOG_CHANGE * b.bps().max(1) as f64
    });
    moved && t.saturating_since(at) >= RATE_LOG_EVERY
}

/// Logs a port's change of state (rare: never per frame).
fn log_transition(dir: &str, h: &PortHealth, old: PortState, reopens_before: u64) {
    use PortState as S;
    let (iface, role, socket) = (&h.interface, h.role, h.socket.as_str());
    if h.reopens != reopens_before {
        tracing::warn!(
            "{iface} ({role}): a new device of that name: {dir} {socket} socket re-opened (re-open #{}); it is {}",
            h.reopens,
            h.state.describe()
        );
        return;
    }
    match h.state {
        S::Up => tracing::warn!(
            "{iface} ({role}): {} -> up; {dir} {socket} socket forwarding",
            old.describe()
        ),
        S::ReopenFailed if h.given_up => tracing::error!(
            "{iface} ({role}): {dir} {socket} socket cannot be re-opened, giving up: {}",
            h.error.as_deref().unwrap_or("unknown error")
        ),
        S::ReopenFailed => tracing::warn!(
            "{iface} ({role}): {dir} {socket} socket cannot be re-opened (retrying): {}",
            h.error.as_deref().unwrap_or("unknown error")
        ),
        state => tracing::warn!(
            "{iface} ({role}): {}; {dir} {socket} socket not forwarding",
            state.describe()
        ),
    }
}

/// How long to sleep, and whether an arrival may end the sleep, given
/// when the shaper's next departure is due (`None`: nothing queued) and
/// how long the link stays busy with what it already sent.
///
/// While the link is busy nothing that arrives can leave earlier: arrivals
/// wait in the socket's queue instead of waking the thread for each, but
/// never longer than `MAX_DEAF`, so a burst cannot overflow it. With a
/// backlog and `coalesce`, departures are coalesced to one wake-up per
/// [`COALESCE`].
fn plan_sleep(due: Option<Duration>, busy: Duration, coalesce: bool) -> (Duration, bool) {
    let wait = due.map_or(IDLE_POLL, |d| d.min(IDLE_POLL));
    let floor = if coalesce { COALESCE } else { Duration::ZERO };
    let target = if due.is_some() { wait.max(floor) } else { wait };
    if busy >= MIN_DEAF && target >= MIN_DEAF {
        (target.min(busy.max(floor)).min(MAX_DEAF), false)
    } else {
        (wait, true)
    }
}

/// The shaper of one direction of the daemon. Every queued frame holds a
/// whole receive buffer, so the packet limit is what the memory budget
/// buys in buffers: a flood of tiny frames cannot pin more memory than
/// the budget.
pub fn shaper_config(cfg: &Config, dir: Direction, buffer: usize) -> ShaperConfig {
    let mut sc = ShaperConfig::from_config(cfg, dir);
    sc.packet_limit = (sc.memory_limit / buffer.max(64) as u64).max(1024);
    sc
}

/// Receive buffer size for frames up to `max_frame` bytes.
pub fn buffer_size(max_frame: usize) -> usize {
    max_frame + HEADROOM
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn departures_are_coalesced_on_a_busy_link_and_arrivals_watched_on_an_idle_one() {
        let us = Duration::from_micros;
        // A backlog on a busy link: a departure due in 255 us (a 1500-byte
        // frame at 47 Mbit/s) waits for the next one, deaf to arrivals.
        let plan = |due, busy| plan_sleep(due, busy, true);
        assert_eq!(plan(Some(us(255)), us(255)), (COALESCE, false));
        // Due in 10 us: coalesced as well (the bucket's burst catches up).
        assert_eq!(plan(Some(us(10)), us(30)), (COALESCE, false));
        // Due later than the coalescing time: no earlier than due...
        assert_eq!(plan(Some(us(800)), us(900)), (us(800), false));
        // ...and never deaf longer than MAX_DEAF.
        assert_eq!(plan(Some(us(5000)), us(5000)), (MAX_DEAF, false));
        // Nothing queued, link busy: deaf until it frees, at least COALESCE.
        assert_eq!(plan(None, us(300)), (COALESCE, false));
        assert_eq!(
            plan(None, COALESCE + us(1)),
            ((COALESCE + us(1)).min(MAX_DEAF), false)
        );
        // Link free: arrivals wake the thread (voice leaves at once).
        assert_eq!(plan(None, Duration::ZERO), (IDLE_POLL, true));
        // A category ceiling holds a frame while the link is free: its
        // departure time, watching arrivals.
        assert_eq!(plan(Some(us(100)), Duration::ZERO), (us(100), true));
        // With a voice frame due, every departure wakes the thread, and
        // arrivals wait no longer than the link is busy.
        let precise = |due, busy| plan_sleep(due, busy, false);
        assert_eq!(precise(Some(us(255)), us(255)), (us(255), false));
        assert_eq!(precise(Some(us(255)), us(100)), (us(100), false));
        assert_eq!(precise(Some(us(10)), us(30)), (us(10), true));
        assert_eq!(precise(None, us(300)), (us(300), false));
        // The buckets' burst covers the coalescing delay.
        assert!(COALESCE * 2 <= crate::shaper::DEFAULT_BURST);
    }

    #[test]
    fn a_rate_change_is_logged_when_large_and_at_most_every_ten_seconds() {
        let mbit = |m: u64| Rate::from_bps(m * 1_000_000);
        let t0 = Instant::from_nanos(1);
        let logged = (t0, [mbit(20), mbit(50)]);
        let at = |s: u64| t0 + Duration::from_secs(s);
        // A tenth is the controller's everyday work: no line.
        assert!(!rate_log_due(logged, [mbit(18), mbit(50)], at(60)));
        // A fifth or more, either way and in either direction, is.
        assert!(rate_log_due(logged, [mbit(15), mbit(50)], at(60)));
        assert!(rate_log_due(logged, [mbit(20), mbit(61)], at(60)));
        // ...but not within ten seconds of the last line.
        assert!(!rate_log_due(logged, [mbit(6), mbit(15)], at(9)));
        assert!(rate_log_due(logged, [mbit(6), mbit(15)], at(10)));
    }
}
