//! qosd: traffic prioritisation for branch-office Internet gateways.
//!
//! The library is all of qosd but its command line (`src/main.rs`):
//! - configuration (`config`);
//! - the sans-IO core, handed the time (`time`) instead of reading a clock
//!   so that tests and the simulator run it in virtual time: packet parsing
//!   (`packet`), the flow table (`flow`), classification (`classify`),
//!   shaping (`shaper`), and the engine that joins them (`engine`);
//! - the I/O edges and the daemon around the engine (`io`, `daemon`);
//! - telemetry: Prometheus metrics (`metrics`), the admin API (`api`) and
//!   its terminal client (`client`) and web console (`console`);
//! - the engine run offline: the office simulator (`simulate`) and the
//!   classification of a capture (`offline`).
//!
//! See ARCHITECTURE.md for the path a packet takes.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
#![warn(missing_docs)]

pub mod api;
pub mod autorate;
pub mod classify;
pub mod client;
pub mod config;
pub mod console;
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
pub mod wan;
