//! Autorate: shaping each direction at what the line delivers now, from
//! the delay its own traffic sees on the WAN side (issue 13).
//!
//! This module holds the sans-IO [`controller`]: WAN queueing-delay
//! samples and the direction's load in, a rate out, decided every 200 ms
//! in virtual or real time. The passive delay measurement that feeds it,
//! the `[autorate]` configuration and the daemon's wiring come next; until
//! then nothing in the data path uses it.

pub mod controller;

pub use controller::{Change, Controller, ControllerConfig, DelaySample, Observed};

#[cfg(test)]
mod tests;
