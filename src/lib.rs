//! qosd: traffic prioritisation for branch-office Internet gateways.
//!
//! The library holds everything that can be tested without a network:
//! configuration, and (as they land) packet parsing, classification and
//! shaping. The `qosd` binary adds the command line and the I/O edges.
//! See ARCHITECTURE.md for the path a packet takes.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
#![warn(missing_docs)]

pub mod api;
pub mod classify;
pub mod client;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod flow;
pub mod io;
pub mod metrics;
pub mod offline;
pub mod packet;
pub mod shaper;
pub mod simulate;
pub mod telemetry;
pub mod time;
