//! The autorate run's hook into the engines: every few milliseconds of
//! virtual time the controllers get the WAN-delay samples the engines
//! measured and may change each direction's shaping rate.
//!
//! TEMPORARY: a stand-in with the API of `crate::autorate::Autorate` and
//! `crate::engine::step_autorate` (holding the configured rates) until
//! they land on main.

use crate::config::{Config, Direction, Rate};
use crate::engine::DirectionEngine;
use crate::engine::frame::Frame;
use crate::shaper::LinkQueue;
use crate::time::Instant;

/// Both directions' controllers.
pub(super) struct Autorate {
    rates: [Rate; 2],
}

impl Autorate {
    /// Controllers for `cfg`'s `[autorate]`.
    pub(super) fn new(cfg: &Config) -> Self {
        Autorate {
            rates: Direction::BOTH.map(|d| cfg.link.rate(d)),
        }
    }

    /// The shaping rate in `dir` now.
    pub(super) fn rate(&self, dir: Direction) -> Rate {
        dir.pick(self.rates)
    }
}

/// Lets the controllers decide at `now` and applies their rates to the
/// engines' queues.
pub(super) fn step<Q: LinkQueue<Frame>>(
    _autorate: &mut Autorate,
    _now: Instant,
    _engines: &mut [DirectionEngine<Q>; 2],
) {
}
