//! Autorate: shaping each direction at what the line delivers now, from
//! the delay the office's own traffic sees on the WAN side (issue 13).
//!
//! [`controller`] decides one direction (WAN queueing-delay samples and
//! the direction's load in, a rate out, every 200 ms); [`link`] runs both,
//! attributing the samples the passive meter ([`crate::wan`]) took to the
//! direction whose buffer they measure. Both are sans-IO: the daemon's
//! download thread drives them in real time, the simulator and the tests
//! in virtual time.

pub mod board;
pub mod controller;
pub mod link;

pub use board::{Board, Published};
pub use controller::{Change, Controller, ControllerConfig, DelaySample, Observed};
pub use link::{Autorate, Totals, WanStatus};

#[cfg(test)]
mod tests;
