//! The interfaces as one direction of the data path sees them: its receiving socket
//! on the ingress interface and its sending socket on the egress one, each
//! watched a few times a second and re-opened when its interface comes back
//! as a new device.
//!
//! Why the data path watches rather than the control plane: each direction
//! owns its sockets, so it can close and re-open them between two batches
//! without any lock or hand-over, and it notices within one check interval
//! (100 ms) instead of the control plane's one-second tick.
//!
//! What happens to an office in each case:
//! - interface removed: the socket is closed and qosd waits for an
//!   interface of that name (a USB NIC re-plugged, a driver reset); it is
//!   not ready meanwhile and frames for it are dropped, counted;
//! - interface back (same name, new ifindex): offloads turned off again,
//!   socket re-opened, forwarding resumes;
//! - the interface is there but cannot be re-opened (offloads that cannot
//!   be turned off, a socket error) for `daemon.reopen_timeout`: qosd
//!   gives up and exits with status 1, so the service's fail-open bypass
//!   carries the office;
//! - administratively down, or no carrier (the modem rebooting): the
//!   socket stays open (the kernel resumes delivering when the link
//!   returns), qosd is not ready, and frames that would go out on it are
//!   dropped, counted, rather than queued stale.

use std::time::Duration;

use crate::io::afpacket::{OpenError, RxSocket, SocketOptions, TxSocket};
use crate::io::link::{LinkProbe, LinkStatus};
use crate::io::netdev::{self, Offloads};
use crate::telemetry::{PortHealth, PortState, SocketKind};
use crate::time::Instant;

/// How often a direction of the data path looks at its interfaces.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// A socket a port can open on an interface by name.
pub trait PortSocket: Sized {
    /// Which of a direction's sockets this is.
    const KIND: SocketKind;
    /// Open it only on an interface that is up: a receiving socket bound
    /// to a down interface depends on the kernel re-attaching it when the
    /// interface comes up, and starts with a pending error.
    const NEEDS_UP: bool;
    /// Opens it on `name`.
    fn open(name: &str, opts: SocketOptions) -> Result<Self, OpenError>;
    /// The interface index it is bound to.
    fn ifindex(&self) -> u32;
}

impl PortSocket for RxSocket {
    const KIND: SocketKind = SocketKind::Receive;
    const NEEDS_UP: bool = true;
    fn open(name: &str, opts: SocketOptions) -> Result<Self, OpenError> {
        RxSocket::open(name, opts)
    }
    fn ifindex(&self) -> u32 {
        RxSocket::ifindex(self)
    }
}

impl PortSocket for TxSocket {
    const KIND: SocketKind = SocketKind::Send;
    const NEEDS_UP: bool = false;
    fn open(name: &str, opts: SocketOptions) -> Result<Self, OpenError> {
        TxSocket::open(name, opts)
    }
    fn ifindex(&self) -> u32 {
        TxSocket::ifindex(self)
    }
}

/// What re-opening needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Reopen {
    /// Socket settings.
    pub opts: SocketOptions,
    /// Turn off a re-created interface's offloads (else refuse it while
    /// they are on).
    pub manage_offloads: bool,
    /// How long a present interface may fail to re-open before qosd gives
    /// up.
    pub timeout: Duration,
}

/// One socket of a direction and the interface it serves.
pub struct Port<S> {
    health: PortHealth,
    socket: Option<S>,
    failing_since: Option<Instant>,
}

impl<S: PortSocket> Port<S> {
    /// A port around a socket opened at start-up.
    pub fn new(interface: &str, role: &'static str, socket: S, now: Instant) -> Self {
        Port {
            health: PortHealth {
                interface: interface.to_owned(),
                role,
                socket: S::KIND,
                since: now,
                ..PortHealth::default()
            },
            socket: Some(socket),
            failing_since: None,
        }
    }

    /// Its health, for snapshots.
    pub fn health(&self) -> &PortHealth {
        &self.health
    }

    /// The socket while it is open (whatever the link's state).
    pub fn socket_mut(&mut self) -> Option<&mut S> {
        self.socket.as_mut()
    }

    /// The socket when frames can go through it now.
    pub fn usable(&mut self) -> Option<&mut S> {
        if self.health.state == PortState::Up {
            self.socket.as_mut()
        } else {
            None
        }
    }

    /// Looks at the interface and acts: closes the socket of a removed
    /// interface, re-opens it on a re-created one. Returns the state it
    /// left, when it changed.
    pub fn check(&mut self, probe: &LinkProbe, reopen: &Reopen, now: Instant) -> Option<PortState> {
        let status = probe.status(&self.health.interface);
        self.apply(status, reopen, now, |name, opts, manage| {
            prepare(name, manage)?;
            S::open(name, opts).map_err(|e| e.to_string())
        })
    }

    /// [`Port::check`] with the link's status and the opener given: the
    /// decisions, testable without interfaces.
    fn apply(
        &mut self,
        status: Option<LinkStatus>,
        reopen: &Reopen,
        now: Instant,
        open: impl FnOnce(&str, SocketOptions, bool) -> Result<S, String>,
    ) -> Option<PortState> {
        let Some(st) = status else {
            self.socket = None;
            self.failing_since = None;
            self.health.error = None;
            return self.set(PortState::Gone, now);
        };
        let stale = self
            .socket
            .as_ref()
            .is_none_or(|s| s.ifindex() != st.ifindex);
        if stale && S::NEEDS_UP && !st.up {
            // Re-created but not up yet: open it once it is.
            self.socket = None;
            self.failing_since = None;
            self.health.error = None;
            return self.set(PortState::Down, now);
        }
        if stale {
            self.socket = None;
            match open(&self.health.interface, reopen.opts, reopen.manage_offloads) {
                Ok(s) => {
                    self.socket = Some(s);
                    self.health.reopens += 1;
                    self.failing_since = None;
                    self.health.error = None;
                }
                Err(e) => {
                    let since = *self.failing_since.get_or_insert(now);
                    self.health.error = Some(e);
                    let gave_up = self.health.given_up;
                    if now.nanos_since(since) >= reopen.timeout.as_nanos() as u64 {
                        self.health.given_up = true;
                    }
                    return match self.set(PortState::ReopenFailed, now) {
                        // Giving up is news too (qosd exits on it).
                        None if self.health.given_up && !gave_up => Some(PortState::ReopenFailed),
                        changed => changed,
                    };
                }
            }
        }
        let state = if !st.up {
            PortState::Down
        } else if !st.carrier {
            PortState::NoCarrier
        } else {
            PortState::Up
        };
        // A socket re-opened on a new device is a change even when the
        // state reads the same as before it went.
        match self.set(state, now) {
            None if stale => Some(self.health.state),
            changed => changed,
        }
    }

    fn set(&mut self, state: PortState, now: Instant) -> Option<PortState> {
        if self.health.state == state {
            return None;
        }
        let old = self.health.state;
        self.health.state = state;
        self.health.since = now;
        Some(old)
    }
}

/// Makes a re-created interface fit for forwarding: offloads off (they
/// would hand qosd frames larger than the MTU), or a refusal when qosd
/// may not change them.
fn prepare(name: &str, manage_offloads: bool) -> Result<(), String> {
    let Ok(now) = netdev::offloads(name) else {
        return Ok(()); // no ethtool support: nothing to turn off
    };
    if !now.any() {
        return Ok(());
    }
    if !manage_offloads {
        return Err(format!(
            "offloads {} are on and datapath.manage_offloads = false",
            now.names()
        ));
    }
    match netdev::set_offloads(name, Offloads::default()) {
        Ok(after) if !after.any() => Ok(()),
        Ok(after) => Err(format!("the driver keeps {} on", after.names())),
        Err(e) => Err(format!("cannot turn off {}: {e}", now.names())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that only knows its interface index.
    struct Fake(u32);
    impl PortSocket for Fake {
        const KIND: SocketKind = SocketKind::Receive;
        const NEEDS_UP: bool = true;
        fn open(_: &str, _: SocketOptions) -> Result<Self, OpenError> {
            unreachable!("tests open through `apply`")
        }
        fn ifindex(&self) -> u32 {
            self.0
        }
    }

    fn t(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    fn link(ifindex: u32, up: bool, carrier: bool) -> Option<LinkStatus> {
        Some(LinkStatus {
            ifindex,
            up,
            carrier,
        })
    }

    fn reopen() -> Reopen {
        Reopen {
            opts: SocketOptions::default(),
            manage_offloads: true,
            timeout: Duration::from_secs(10),
        }
    }

    fn never(_: &str, _: SocketOptions, _: bool) -> Result<Fake, String> {
        panic!("re-opened a socket whose interface did not change")
    }

    /// Removal closes the socket; the interface back under a new index is
    /// re-opened (and counted); back under the same index (it was only
    /// down) keeps the socket.
    #[test]
    fn removal_closes_and_recreation_reopens() {
        let mut p = Port::new("lan0", "lan", Fake(7), t(0));
        assert_eq!(p.apply(link(7, true, true), &reopen(), t(100), never), None);
        assert!(p.usable().is_some());

        assert_eq!(p.apply(None, &reopen(), t(200), never), Some(PortState::Up));
        assert_eq!(p.health().state, PortState::Gone);
        assert!(
            p.socket_mut().is_none(),
            "the socket of a removed interface stays open"
        );

        let changed = p.apply(link(9, true, true), &reopen(), t(300), |_, _, _| {
            Ok(Fake(9))
        });
        assert_eq!(changed, Some(PortState::Gone));
        assert_eq!(p.health().state, PortState::Up);
        assert_eq!(p.health().reopens, 1);
        assert_eq!(p.socket_mut().map(|s| s.0), Some(9));
        assert_eq!(p.health().since, t(300));
    }

    /// Removed and re-created between two checks: only the index tells,
    /// and the socket must still be re-opened.
    #[test]
    fn a_new_index_between_two_checks_is_reopened() {
        let mut p = Port::new("lan0", "lan", Fake(7), t(0));
        let changed = p.apply(link(8, true, true), &reopen(), t(100), |_, _, _| {
            Ok(Fake(8))
        });
        assert_eq!(changed, Some(PortState::Up), "a re-open is reported");
        assert_eq!(p.socket_mut().map(|s| s.0), Some(8));
        assert_eq!(p.health().reopens, 1);
    }

    /// Down and no carrier keep the socket (the kernel resumes delivery
    /// when the link returns) but make the port unusable.
    #[test]
    fn down_and_no_carrier_keep_the_socket_but_not_usable() {
        let mut p = Port::new("wan0", "wan", Fake(3), t(0));
        assert_eq!(
            p.apply(link(3, true, false), &reopen(), t(100), never),
            Some(PortState::Up)
        );
        assert_eq!(p.health().state, PortState::NoCarrier);
        assert!(p.usable().is_none());
        assert!(p.socket_mut().is_some());
        p.apply(link(3, false, false), &reopen(), t(200), never);
        assert_eq!(p.health().state, PortState::Down);
        p.apply(link(3, true, true), &reopen(), t(300), never);
        assert_eq!(p.health().state, PortState::Up);
        assert_eq!(p.health().reopens, 0);
    }

    /// A present interface that cannot be re-opened is retried at every
    /// check and given up on only after the timeout; a success in between
    /// resets the clock.
    #[test]
    fn reopen_failures_give_up_after_the_timeout() {
        let mut p = Port::new("lan0", "lan", Fake(7), t(0));
        p.apply(None, &reopen(), t(100), never);
        let fail = |_: &str, _: SocketOptions, _: bool| Err::<Fake, _>("offloads on".to_owned());
        p.apply(link(9, true, true), &reopen(), t(1_000), fail);
        assert_eq!(p.health().state, PortState::ReopenFailed);
        assert_eq!(p.health().error.as_deref(), Some("offloads on"));
        p.apply(link(9, true, true), &reopen(), t(10_999), fail);
        assert!(!p.health().given_up, "gave up before the timeout");
        p.apply(link(9, true, true), &reopen(), t(11_000), fail);
        assert!(p.health().given_up, "did not give up at the timeout");

        let mut q = Port::new("lan0", "lan", Fake(7), t(0));
        q.apply(link(9, true, true), &reopen(), t(0), fail);
        q.apply(link(9, true, true), &reopen(), t(5_000), |_, _, _| {
            Ok(Fake(9))
        });
        assert_eq!(q.health().error, None);
        q.apply(link(10, true, true), &reopen(), t(6_000), fail);
        q.apply(link(10, true, true), &reopen(), t(14_000), fail);
        assert!(
            !q.health().given_up,
            "the clock did not restart after a success"
        );
    }

    /// A re-created interface that is still down is not opened (a receiving
    /// socket bound to a down interface relies on the kernel re-attaching
    /// it later); it is opened at the first check that finds it up.
    #[test]
    fn a_recreated_interface_is_opened_once_it_is_up() {
        let mut p = Port::new("lan0", "lan", Fake(7), t(0));
        p.apply(None, &reopen(), t(100), never);
        p.apply(link(9, false, false), &reopen(), t(200), never);
        assert_eq!(p.health().state, PortState::Down);
        assert!(p.socket_mut().is_none());
        assert_eq!(p.health().reopens, 0);
        p.apply(link(9, true, true), &reopen(), t(300), |_, _, _| {
            Ok(Fake(9))
        });
        assert_eq!(p.health().state, PortState::Up);
        assert_eq!(p.socket_mut().map(|s| s.0), Some(9));
        assert_eq!(p.health().reopens, 1);
    }

    /// Waiting for a removed interface never gives up: the bypass could
    /// not use it either, and it may come back (a USB NIC re-plugged).
    #[test]
    fn a_gone_interface_is_waited_for() {
        let mut p = Port::new("lan0", "lan", Fake(7), t(0));
        p.apply(None, &reopen(), t(100), never);
        p.apply(None, &reopen(), t(3_600_000), never);
        assert_eq!(p.health().state, PortState::Gone);
        assert!(!p.health().given_up);
    }
}
