//! The flow table: one entry per bidirectional connection, shared by both
//! direction threads and read by the API. Generic over what it keeps per
//! flow ([`FlowValue`]): it knows identity, counters and lifetimes, not
//! classification.
//!
//! Keys are canonical (the lower endpoint first), so the download half of a
//! connection finds the entry, and the verdict, its upload half created.
//! The VLAN id is part of the key because offices reuse private addresses
//! across VLANs.
//!
//! The per-packet path takes no lock for a flow the thread saw lately
//! ([`FlowCache`]), and a read lock on one map shard otherwise; a new flow
//! takes one of several CLOCK queues' locks and a shard's write lock.
//!
//! Memory is bounded: at most `max_flows` entries (see [`FlowTable`] for
//! the small, transient excess). New flows evict old ones with the CLOCK
//! algorithm (an approximation of least-recently-used): a flow that saw a
//! packet since the clock hand last passed gets a second chance, so an
//! active call survives a flood of one-packet spoofed flows. Idle flows
//! expire by timeout (separate TCP/UDP, shorter after FIN/RST) in
//! [`FlowTable::expire`], and [`FlowTable::trim`] evicts what a reload
//! that lowered `max_flows` left over; both are called once a second and
//! both do a bounded amount of work, whatever the table's size.
//!
//! The data path never does work proportional to the table: one new flow
//! pops at most [`INSERT_POP_LIMIT`] entries from a CLOCK queue and evicts
//! at most `1 + EXTRA_EVICTIONS_PER_INSERT` flows, even right after a
//! reload lowered `max_flows` by millions.

mod cache;
mod entry;
mod key;
mod roles;
mod table;

pub use cache::{DEFAULT_SETS, FlowCache};
pub use entry::{Flow, FlowValue};
pub use key::{FlowKey, Side};
pub use table::{
    EXPIRE_VISITS, EXTRA_EVICTIONS_PER_INSERT, FlowTable, FlowTableStats, INSERT_POP_LIMIT,
    TRIM_EVICTIONS, Trimmed,
};

#[cfg(test)]
mod tests;
