//! The data path: each direction receives on one interface, runs the
//! engine and transmits on the other when the shaper releases frames; one
//! thread serves both directions (or, with `datapath.threads = 2`, one
//! each), sleeping in `poll` until the next frame is due or arrives, or
//! a voice frame rings the AF_XDP backend's doorbell.
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

/// Most descriptors one `poll` watches: the doorbell, the AF_XDP sockets
/// of every receive queue and the packet socket.
const MAX_POLL: usize = crate::io::xdp::MAX_QUEUES + 2;
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
/// buckets save up twice this of credit (`shaper_config`), so waking
/// this late loses no rate, and the thread wakes once per
/// this time instead of once per frame (a 1500-byte frame leaves every
/// 255 us at 47 Mbit/s). A voice frame arriving meanwhile would wait for
/// the wake-up (up to this long), so around the times a call's next frames
/// are due (`engine::cadence`) every departure wakes the thread, unless the
/// call's frames ring the doorbell (`engine::bells`). Why 750 us
/// and not less or more: a wake-up costs more than the frames it sends at
/// office rates, and 1 ms was measured to cost the call's latency, as each
/// wake-up's frames wait together in the modem (BENCHMARKS.md, "Coalescing
/// 750 us").
const COALESCE: Duration = Duration::from_micros(750);
/// How far past a coalesced sleep no voice frame may be due either: the
/// timer fires a little late on a busy machine, and the other direction's
/// turn may come first.
const CALM_SLACK: Duration = Duration::from_micros(250);
// A coalesced sleep is a deaf one: the receive queue bounds both.
const _: () = assert!(COALESCE.as_nanos() <= MAX_DEAF.as_nanos());
/// How often the download path hands the WAN-delay samples to autorate
/// (which decides every 200 ms).
const AUTORATE_EVERY: Duration = Duration::from_millis(20);
/// At most one log line about the rate per this long...
const RATE_LOG_EVERY: Duration = Duration::from_secs(10);
/// ...and only for a change of at least this share since the last one.
const RATE_LOG_CHANGE: f64 = 0.2;

/// One direction of the data path: its engine, sockets, buffers and
/// counters; [`run`] gives it turns on a thread (alone or with the other).
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
    /// Rates between the directions, the link's status for the control
    /// plane.
    board: Arc<Board>,
    /// The download path runs autorate: it sees the answers to probes.
    autorate: Option<AutorateRun>,
    /// When to publish counters next.
    next_publish: Instant,
    /// When to look at the interfaces next.
    next_check: Instant,
    /// Whether the engine's doorbell is armed, for the receive socket of
    /// the ingress port's this many re-opens (a new socket has a new,
    /// empty map).
    bells_for: (bool, u64),
    /// Rings heard against frames that rang.
    book: BellBook,
    /// The engine's count of frames that rang, when last looked at.
    bell_frames: u64,
}

/// What a turn of a path's loop asks for next.
enum Next {
    /// Turn again at once: frames are waiting or a departure is due.
    Again,
    /// Sleep until `until`, or until a frame arrives when `watch` is set.
    Sleep { until: Instant, watch: bool },
}

/// Autorate on the download path, and its rate-limited log.
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
            next_publish: now(),
            next_check: now(),
            bells_for: (false, 0),
            book: BellBook::default(),
            bell_frames: 0,
        })
    }

    /// One turn of the loop: looks at the ports when due, takes a reload,
    /// receives a batch, sends what is due, publishes when due; then says
    /// whether to turn again at once or how to sleep.
    fn turn(&mut self) -> Next {
        let t = now();
        if t >= self.next_check || self.check_soon {
            self.check_soon = false;
            self.next_check = t + ports::CHECK_EVERY;
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
        self.hear_bells();
        let t = now();
        self.follow_link(t);
        self.transmit_due(t);
        if t >= self.next_publish {
            self.publish(t, true);
            self.next_publish = t + PUBLISH_EVERY;
        }
        // Frames AF_XDP already handed over but this loop has not read yet
        // (it reads RX_BATCH at a time): `poll` would not report them.
        if self.rx.socket_mut().is_some_and(|rx| rx.has_pending()) {
            return Next::Again;
        }
        let t = now();
        let due = self
            .engine
            .next_wakeup()
            .map(|due| Duration::from_nanos(due.nanos_since(t)));
        let busy = Duration::from_nanos(self.engine.queue().link_free_at().nanos_since(t));
        let engine = &mut self.engine;
        match next_sleep(due, busy, |deaf| engine.urgent_calm(t, deaf)) {
            Some((wait, watch)) => {
                // A frame that rang and is not in yet: the kernel rings
                // before it hands the frame to the socket.
                let owed = self.book.sleep();
                Next::Sleep {
                    until: t + wait,
                    watch: watch || owed,
                }
            }
            None => Next::Again,
        }
    }

    /// Keeps the engine's doorbell in step with the receive socket, counts
    /// the rings heard against the frames that rang, and makes the map
    /// changes the engine asks for (a bpf(2) call each, once per flow).
    fn hear_bells(&mut self) {
        let reopens = self.rx.health().reopens;
        let rx = self.rx.socket_mut();
        let now_for = (rx.as_ref().is_some_and(|r| r.bell_fd().is_some()), reopens);
        if now_for != self.bells_for {
            self.engine.arm_bells(now_for.0);
            self.bells_for = now_for;
            self.book = BellBook::default();
        }
        let Some(rx) = rx.filter(|_| now_for.0) else {
            return;
        };
        let rang = rx.drain_bell();
        self.io.bell_rings += rang;
        let frames = self.engine.bell_frames();
        self.book
            .turn(rang, frames.saturating_sub(self.bell_frames));
        self.bell_frames = frames;
        self.engine
            .take_bell_changes(|key, on| rx.set_bell(key, on).is_ok());
    }

    /// Keeps the queue at the link's rate: the download path runs
    /// autorate on what its engine measured (and the upload path sent),
    /// the upload path follows the rate it sets.
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
        // A full send queue holds the turn up a couple of milliseconds in
        // all, however many batches are due: the other direction, on the
        // same thread, waits for it.
        let mut deadline = None;
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
                tx.send_batch_within(
                    views.get(..n).unwrap_or_default(),
                    &mut outcome,
                    &mut deadline,
                );
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

    /// Adds the doorbell, if any, and with `sockets` the receiving sockets
    /// (one per queue with AF_XDP; none while the ingress interface is
    /// gone) to the front of `pfds`; returns how many.
    fn watch(&mut self, pfds: &mut [libc::pollfd], sockets: bool) -> usize {
        let Some(rx) = self.rx.socket_mut() else {
            return 0;
        };
        let bell = rx.bell_fd();
        let fds = bell.iter().chain(rx.poll_fds().iter().filter(|_| sockets));
        let mut n = 0;
        for (p, &fd) in pfds.iter_mut().zip(fds) {
            *p = pollfd(fd);
            n += 1;
        }
        n
    }

    /// After a sleep that watched `pfds` (this path's own): an interface
    /// that went down (or away) makes every poll return at once until its
    /// error is read; read it, and look at the interface.
    fn woke(&mut self, pfds: &[libc::pollfd]) {
        if !pfds.iter().any(|p| p.revents & libc::POLLERR != 0) {
            return;
        }
        if let Some(rx) = self.rx.socket_mut()
            && rx.take_error().is_some()
        {
            self.io.rx_errors += 1;
        }
        self.check_soon = true;
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

/// Runs `paths` (both directions, or one) on the calling thread until
/// `stop` is set: every wake-up serves each of them, and the thread sleeps
/// until the soonest of their next departures, or an arrival on a port one
/// of them watches. One thread for both directions wakes about half as
/// often as one per direction under a two-way load: a wake-up costs more
/// than the work it does at office rates (BENCHMARKS.md, "One thread for
/// both directions").
pub fn run(mut paths: Vec<Datapath>, stop: &AtomicBool) {
    // Precise wake-ups for pacing slow links: the default 50 us timer
    // slack would add jitter to every sleep.
    // SAFETY: prctl on the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000, 0, 0, 0) };
    for p in &mut paths {
        p.publish(now(), true);
    }
    let mut pfds = vec![pollfd(-1); paths.len() * MAX_POLL];
    // Which of `pfds` each path watches this time.
    let mut spans = vec![(0, 0); paths.len()];
    while !stop.load(Ordering::Relaxed) {
        let mut again = false;
        let mut until = Instant::NEVER;
        let mut n = 0;
        for (p, span) in paths.iter_mut().zip(spans.iter_mut()) {
            *span = (n, n);
            match p.turn() {
                Next::Again => again = true,
                Next::Sleep { until: u, watch } => {
                    until = until.min(u);
                    if let Some(free) = pfds.get_mut(n..) {
                        n += p.watch(free, watch);
                    }
                }
            }
            span.1 = n;
        }
        // Each path's sleep was planned from the end of its own turn: the
        // later paths' turns have used some of it since.
        let t = now();
        if again || until <= t {
            continue;
        }
        let wait = Duration::from_nanos(until.nanos_since(t)).min(IDLE_POLL);
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `n` valid pollfds (or none: a timed sleep) and a
        // timespec, both alive for the call's duration.
        let ready =
            unsafe { libc::ppoll(pfds.as_mut_ptr(), n as libc::nfds_t, &ts, std::ptr::null()) };
        if ready > 0 {
            for (p, &(from, to)) in paths.iter_mut().zip(&spans) {
                p.woke(pfds.get(from..to).unwrap_or_default());
            }
        }
    }
    for p in &mut paths {
        p.publish(now(), false);
    }
}

/// The doorbell's rings heard against the frames that rang: whether a
/// sleep must watch the sockets for a frame that rang and is not in yet.
#[derive(Debug, Default, Clone, Copy)]
struct BellBook {
    /// Rings heard whose frame has not been received.
    owed: u64,
    /// Frames a sleep watched for that had not come by its end: when they
    /// come they settle their own rings, not newer ones.
    late: u64,
}

/// Most rings remembered as watched for.
const LATE_MAX: u64 = 64;

impl BellBook {
    /// A turn heard `rang` rings and received `received` frames of flows
    /// that ring.
    fn turn(&mut self, rang: u64, received: u64) {
        let settled = received.min(self.late);
        // A quiet turn forgets frames still watched for: they were lost
        // (a full socket drops a frame after it rang).
        self.late = if rang == 0 && received == 0 {
            0
        } else {
            self.late - settled
        };
        self.owed = self
            .owed
            .saturating_add(rang)
            .saturating_sub(received - settled);
    }

    /// Whether the coming sleep must watch the sockets. It does once per
    /// ring: a ring whose frame never comes must not keep the thread
    /// listening.
    fn sleep(&mut self) -> bool {
        let owed = std::mem::take(&mut self.owed);
        self.late = self.late.saturating_add(owed).min(LATE_MAX);
        owed > 0
    }
}

/// A pollfd waiting for `fd` to become readable.
fn pollfd(fd: std::os::fd::RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
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

/// The sleep after a turn (`None`: turn again at once), given when the
/// next departure is due and how long the link stays busy (as
/// [`plan_sleep`]), and `calm`: whether no voice frame is queued or due
/// within the given time. Departures are coalesced where it is calm over
/// the coalesced sleep and [`CALM_SLACK`] after it; elsewhere every
/// departure wakes the thread, as a voice frame arriving during a deaf
/// sleep would wait for its end.
fn next_sleep(
    due: Option<Duration>,
    busy: Duration,
    calm: impl FnOnce(Duration) -> bool,
) -> Option<(Duration, bool)> {
    let coalesced = plan_sleep(due, busy, true);
    // A sleep that watches the sockets is the same either way.
    let (wait, watch) = if coalesced.1 || calm(coalesced.0 + CALM_SLACK) {
        coalesced
    } else {
        plan_sleep(due, busy, false)
    };
    (!wait.is_zero()).then_some((wait, watch))
}

/// The shaper of one direction of the daemon. Every queued frame holds a
/// whole receive buffer, so the packet limit is what the memory budget
/// buys in buffers: a flood of tiny frames cannot pin more memory than
/// the budget. The buckets save up twice [`COALESCE`] of credit (at least),
/// so a wake-up that coalescing made late, and the timer later still,
/// loses no rate; the engine alone (`simulate`, with exact departures)
/// keeps the shaper's default.
pub fn shaper_config(cfg: &Config, dir: Direction, buffer: usize) -> ShaperConfig {
    let mut sc = ShaperConfig::from_config(cfg, dir);
    sc.packet_limit = (sc.memory_limit / buffer.max(64) as u64).max(1024);
    sc.burst = sc.burst.max(2 * COALESCE);
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
    }

    #[test]
    fn a_ring_whose_frame_is_not_in_makes_one_sleep_watch_the_sockets() {
        let mut b = BellBook::default();
        // Ring and frame in the same turn: nothing to watch for.
        b.turn(1, 1);
        assert!(!b.sleep());
        // The frame comes after its ring: one sleep watches, and when it
        // comes it settles its ring...
        b.turn(1, 0);
        assert!(b.sleep());
        b.turn(0, 1);
        assert!(!b.sleep());
        // ...and not a newer ring in the same turn, whose frame is not in.
        b.turn(1, 0);
        assert!(b.sleep());
        b.turn(1, 1);
        assert!(b.sleep(), "the second ring's frame is still to come");
        b.turn(0, 1);
        assert!(!b.sleep());
        // A frame that never comes is watched for once, then forgotten.
        b.turn(1, 0);
        assert!(b.sleep());
        b.turn(0, 0);
        assert!(!b.sleep());
        b.turn(1, 1);
        assert!(!b.sleep());
    }

    #[test]
    fn the_daemons_buckets_save_up_twice_the_coalescing_delay() {
        // A coalesced wake-up comes up to COALESCE late, and the timer may
        // add as much again on a busy machine: the credit saved meanwhile
        // must not be cut, or the link loses rate.
        let cfg = crate::config::load_embedded().unwrap();
        for dir in [Direction::Upload, Direction::Download] {
            let sc = shaper_config(&cfg, dir, buffer_size(1518));
            assert!(sc.burst >= 2 * COALESCE, "{:?}", sc.burst);
            assert!(sc.burst >= crate::shaper::DEFAULT_BURST);
        }
    }

    #[test]
    fn a_turn_coalesces_only_where_calm_over_the_sleep_it_takes() {
        let us = Duration::from_micros;
        // A backlog on a busy link, the next departure when it frees: with no
        // voice about, it waits for the coalesced wake-up, and calm is
        // asked over that sleep and the slack after it (not the longest
        // deaf one).
        let mut asked = None;
        let plan = next_sleep(Some(us(300)), us(300), |d| {
            asked = Some(d);
            true
        });
        assert_eq!(plan, Some((COALESCE, false)));
        assert_eq!(asked, Some(COALESCE + CALM_SLACK));
        // A voice frame due (or queued): every departure wakes the thread,
        // deaf no longer than the link is busy.
        let precise = |due, busy| next_sleep(Some(due), busy, |_| false);
        assert_eq!(precise(us(300), us(300)), Some((us(300), false)));
        // A category ceiling holds a frame while the link is free.
        assert_eq!(precise(us(100), Duration::ZERO), Some((us(100), true)));
        // Due now (the link free): at once, calm or not.
        assert_eq!(
            next_sleep(Some(Duration::ZERO), Duration::ZERO, |_| true),
            None
        );
        assert_eq!(precise(Duration::ZERO, Duration::ZERO), None);
        // Idle: a sleep that watches the sockets needs no calm.
        let plan = next_sleep(None, Duration::ZERO, |_| panic!("not asked"));
        assert_eq!(plan, Some((IDLE_POLL, true)));
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
