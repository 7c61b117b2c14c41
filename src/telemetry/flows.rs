//! Flow-table, DNS and inspection-memory figures, gathered from the state
//! both directions share: the one place they are assembled, for the
//! daemon's metrics and API and for the simulator's.

use std::sync::atomic::Ordering;

use crate::engine::Shared;

/// Flow-table figures for one scrape.
#[derive(Debug, Clone, Default)]
pub struct FlowStats {
    /// Flows tracked now.
    pub active: u64,
    /// Flows ever created.
    pub created: u64,
    /// Flows evicted because the table was full.
    pub evicted: u64,
    /// Flows removed after their idle timeout.
    pub expired: u64,
    /// Active flows by category id (of the flow's first direction).
    pub by_category: Vec<u64>,
    /// Names learned from DNS answers, held now.
    pub dns_entries: u64,
    /// DNS cache evictions.
    pub dns_evictions: u64,
    /// Bytes of flows' inspection state held now.
    pub dpi_memory_bytes: u64,
    /// The limit on them (`classify.dpi_memory`).
    pub dpi_memory_limit_bytes: u64,
}

impl FlowStats {
    /// The figures of `shared` now, flows counted per category of the
    /// configuration in force. Visits the whole flow table: not on a thread
    /// that must stay responsive.
    pub fn of(shared: &Shared) -> Self {
        let table = &shared.table;
        let mut by_category = vec![0u64; shared.config().category.len()];
        table.for_each(|_, flow| {
            let cat = flow.value.category(flow.first_direction());
            if let Some(n) = by_category.get_mut(cat.index()) {
                *n += 1;
            }
        });
        FlowStats {
            active: table.len() as u64,
            created: table.stats.created.load(Ordering::Relaxed),
            evicted: table.stats.evicted.load(Ordering::Relaxed),
            expired: table.stats.expired.load(Ordering::Relaxed),
            by_category,
            dns_entries: shared.names.len() as u64,
            dns_evictions: shared.names.evictions(),
            dpi_memory_bytes: shared.dpi.used() as u64,
            dpi_memory_limit_bytes: shared.dpi.limit() as u64,
        }
    }
}
