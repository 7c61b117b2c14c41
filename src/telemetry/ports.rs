//! The health of the data path's ports (a direction's receiving and
//! sending sockets and their interfaces), as its snapshots carry it to
//! readiness, metrics and the API.

use crate::time::Instant;

/// How a port stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortState {
    /// Open, up, carrier present.
    #[default]
    Up,
    /// Open, administratively up, no carrier.
    NoCarrier,
    /// Open, administratively down.
    Down,
    /// No interface of that name: socket closed, waiting for it.
    Gone,
    /// The interface is there but its socket cannot be re-opened.
    ReopenFailed,
}

impl PortState {
    /// The name used in logs, `/readyz` and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Up => "up",
            PortState::NoCarrier => "no_carrier",
            PortState::Down => "down",
            PortState::Gone => "gone",
            PortState::ReopenFailed => "reopen_failed",
        }
    }

    /// Words for a person.
    pub fn describe(self) -> &'static str {
        match self {
            PortState::Up => "up",
            PortState::NoCarrier => "no carrier",
            PortState::Down => "administratively down",
            PortState::Gone => "gone (no interface of that name)",
            PortState::ReopenFailed => "cannot be re-opened",
        }
    }
}

/// Which socket of a direction a port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SocketKind {
    /// The ingress interface's receiving socket.
    #[default]
    Receive,
    /// The egress interface's sending socket.
    Send,
}

impl SocketKind {
    /// `receive` or `send`.
    pub fn as_str(self) -> &'static str {
        match self {
            SocketKind::Receive => "receive",
            SocketKind::Send => "send",
        }
    }
}

/// What a snapshot says about one port.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortHealth {
    /// The interface name.
    pub interface: String,
    /// `lan` or `wan`.
    pub role: &'static str,
    /// Which of the direction's sockets.
    pub socket: SocketKind,
    /// How it stands.
    pub state: PortState,
    /// Since when.
    pub since: Instant,
    /// Times its socket was re-opened.
    pub reopens: u64,
    /// Why the last re-open failed, while it fails.
    pub error: Option<String>,
    /// It could not be re-opened for longer than `daemon.reopen_timeout`:
    /// qosd must exit so the fail-open bypass takes over.
    pub given_up: bool,
}

/// Each interface once, as the sockets of both directions see it: the worst state any
/// of its sockets reports (with that socket's time and error), and the
/// re-opens of all its sockets.
pub fn by_interface<'a>(ports: impl Iterator<Item = &'a PortHealth>) -> Vec<PortHealth> {
    let mut out: Vec<PortHealth> = Vec::with_capacity(2);
    for p in ports {
        match out.iter_mut().find(|o| o.interface == p.interface) {
            Some(o) => {
                let reopens = o.reopens + p.reopens;
                if rank(p.state) > rank(o.state) {
                    *o = p.clone();
                }
                o.reopens = reopens;
                o.given_up |= p.given_up;
            }
            None => out.push(p.clone()),
        }
    }
    out
}

/// How bad a state is, for [`by_interface`].
fn rank(s: PortState) -> u8 {
    match s {
        PortState::Up => 0,
        PortState::NoCarrier => 1,
        PortState::Down => 2,
        PortState::Gone => 3,
        PortState::ReopenFailed => 4,
    }
}
