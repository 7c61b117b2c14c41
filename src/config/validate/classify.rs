//! `[classify]`: how flows are recognised, and the memory their
//! inspection may hold.

use std::path::Path;

use super::super::model::Classify;
use super::super::raw::RawClassify;
use super::super::units::ByteSize;
use super::Problems;
use super::categories::Categories;
use super::values::{int_in_range, parse_bool, relative_path, size_in_range};

/// Default of `classify.dpi_memory`: room for the partial state of about
/// ten thousand flows at once (a ClientHello split over two segments holds
/// ~2 KiB while it waits), a few hundred KiB of it in a quiet office.
pub const DEFAULT_DPI_MEMORY: u64 = 32 << 20;

/// Most `classify.dpi_memory` accepts: more would only let a flood grow
/// qosd further.
pub const MAX_DPI_MEMORY: u64 = 4 << 30;

pub(super) fn classify(
    raw: &RawClassify,
    cats: &Categories,
    base_dir: &Path,
    p: &mut Problems,
) -> Classify {
    let ack_category = match &raw.ack_category {
        None => cats
            .list
            .iter()
            .any(|c| c.name == "control")
            .then(|| "control".to_owned()),
        Some(v) => p.text("classify.ack_category", v).and_then(|name| {
            if name.is_empty() || name == "none" {
                None
            } else if cats.lookup(&name).is_none() && !cats.is_empty() {
                p.add(
                    "classify.ack_category",
                    format!(
                        "unknown category \"{name}\" (known: {}; or \"none\")",
                        cats.known()
                    ),
                );
                None
            } else {
                Some(name)
            }
        }),
    };
    Classify {
        ack_category,
        trust_dscp: p.optional("classify.trust_dscp", &raw.trust_dscp, false, parse_bool),
        apps_file: raw
            .apps_file
            .as_ref()
            .and_then(|v| p.parse("classify.apps_file", v, |s| relative_path(s, base_dir))),
        inspect_packets: p.optional("classify.inspect_packets", &raw.inspect_packets, 24, |s| {
            int_in_range(1, 100, "inspect_packets")(s).map(|n| n as u16)
        }),
        bulk_after_bytes: p.optional(
            "classify.bulk_after_bytes",
            &raw.bulk_after_bytes,
            50_000_000,
            |s| int_in_range(0, i64::MAX, "bulk_after_bytes")(s).map(|n| n as u64),
        ),
        dpi_memory: p.optional(
            "classify.dpi_memory",
            &raw.dpi_memory,
            ByteSize::from_bytes(DEFAULT_DPI_MEMORY),
            size_in_range(0, MAX_DPI_MEMORY, "dpi_memory"),
        ),
    }
}
