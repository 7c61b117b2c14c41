//! What each LAN computer sends and receives, counted on the data-path
//! thread of one direction: the per-host view of the admin API
//! (`/api/v1/hosts`, `qosd top`) and the optional top-N metrics.
//!
//! A host is its LAN-side MAC address and VLAN (the same identity the
//! shaper's host fairness uses). The table has a fixed size, set up
//! front: nothing is allocated per packet, and a flood of spoofed MAC
//! addresses only recycles the least recently seen entries.

use crate::config::MAX_CATEGORIES;
use crate::time::Instant;

/// Hosts tracked per direction: an office has tens; a spoofing flood
/// recycles entries rather than growing the table.
pub const HOST_CAPACITY: usize = 1024;
const _: () = assert!(HOST_CAPACITY.is_power_of_two());
/// LAN addresses remembered per host (IPv4, and IPv6 privacy addresses
/// come and go); a new one replaces the oldest.
pub const HOST_ADDRESSES: usize = 4;
/// Entries probed for a host: its slot and the next ones.
const PROBES: usize = 8;

/// One LAN computer's counters in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCounters {
    /// Its LAN-side MAC address.
    pub mac: [u8; 6],
    /// Its VLAN, if tagged.
    pub vlan: Option<u16>,
    /// The LAN addresses it used lately (IPv4-mapped for IPv4), in no
    /// particular order; `addresses` of them are set.
    pub address: [[u8; 16]; HOST_ADDRESSES],
    /// How many of `address` are set.
    pub addresses: u8,
    /// Which of `address` was seen last.
    newest: u8,
    /// Frames.
    pub packets: u64,
    /// Bytes (frame lengths), by category index of the engine's
    /// configuration.
    pub bytes: [u64; MAX_CATEGORIES],
    /// When it was last seen.
    pub last_seen: Instant,
    /// Its tag ([`super::frame::host_tag`]); 0 marks a free entry.
    tag: u32,
}

impl Default for HostCounters {
    fn default() -> Self {
        HostCounters {
            mac: [0; 6],
            vlan: None,
            address: [[0; 16]; HOST_ADDRESSES],
            addresses: 0,
            newest: 0,
            packets: 0,
            bytes: [0; MAX_CATEGORIES],
            last_seen: Instant::ZERO,
            tag: 0,
        }
    }
}

impl HostCounters {
    /// Its bytes in all categories.
    pub fn total_bytes(&self) -> u64 {
        self.bytes.iter().sum()
    }

    /// The LAN addresses it used lately.
    pub fn addresses(&self) -> &[[u8; 16]] {
        self.address
            .get(..usize::from(self.addresses))
            .unwrap_or_default()
    }

    #[inline]
    fn note_address(&mut self, addr: &[u8; 16]) {
        // Most packets come from the address seen last: one compare.
        if self.address.get(usize::from(self.newest)) == Some(addr) && self.addresses > 0 {
            return;
        }
        if let Some(i) = self.addresses().iter().position(|a| a == addr) {
            self.newest = i as u8;
            return;
        }
        // A new one: in a free place, else in place of the oldest (the one
        // after the newest, round the ring), without moving the others.
        let i = if usize::from(self.addresses) < HOST_ADDRESSES {
            self.addresses += 1;
            usize::from(self.addresses) - 1
        } else {
            (usize::from(self.newest) + 1) % HOST_ADDRESSES
        };
        if let Some(a) = self.address.get_mut(i) {
            *a = *addr;
        }
        self.newest = i as u8;
    }
}

/// The hosts one direction has seen.
#[derive(Debug)]
pub struct HostTable {
    entries: Vec<HostCounters>,
}

impl Default for HostTable {
    fn default() -> Self {
        HostTable {
            entries: vec![HostCounters::default(); HOST_CAPACITY],
        }
    }
}

impl HostTable {
    /// Counts a frame of `len` bytes in `category` for the host tagged
    /// `tag` (never 0 for a real host: [`super::frame::host_tag`] mixes a
    /// MAC address that is never all zero), whose MAC is `mac`, and notes
    /// its LAN address `addr` (for IP frames).
    #[inline]
    #[allow(clippy::too_many_arguments)] // one call site, on the hot path: no struct to build
    pub fn observe(
        &mut self,
        tag: u32,
        mac: [u8; 6],
        vlan: Option<u16>,
        addr: Option<&[u8; 16]>,
        category: usize,
        len: u64,
        now: Instant,
    ) {
        // A group address (multicast, broadcast) is no computer: a
        // download to it is not any one host's.
        if mac.first().is_some_and(|b| b & 1 == 1) {
            return;
        }
        let tag = tag.max(1);
        let n = self.entries.len();
        let start = ((u64::from(tag) * n as u64) >> 32) as usize;
        let mut victim = start;
        let mut oldest = Instant::NEVER;
        let mut free = None;
        let mut found = None;
        for i in 0..PROBES {
            // The capacity is a power of two: a mask, not a division.
            let idx = (start + i) & (n - 1);
            let Some(e) = self.entries.get(idx) else {
                break;
            };
            if e.tag == tag && e.mac == mac && e.vlan == vlan {
                found = Some(idx);
                break;
            }
            if e.tag == 0 {
                free = free.or(Some(idx));
            } else if e.last_seen < oldest {
                (victim, oldest) = (idx, e.last_seen);
            }
        }
        // A free entry, else the least recently seen host's.
        let idx = found.or(free).unwrap_or(victim);
        let Some(e) = self.entries.get_mut(idx) else {
            return;
        };
        if found.is_none() {
            *e = HostCounters {
                mac,
                vlan,
                tag,
                ..HostCounters::default()
            };
        }
        e.packets += 1;
        if let Some(b) = e.bytes.get_mut(category) {
            *b += len;
        }
        e.last_seen = now;
        if let Some(a) = addr {
            e.note_address(a);
        }
    }

    /// The hosts seen (in table order).
    pub fn hosts(&self) -> impl Iterator<Item = &HostCounters> {
        self.entries.iter().filter(|e| e.tag != 0)
    }

    /// Copies the hosts seen into `out`, reusing its memory.
    pub fn copy_into(&self, out: &mut Vec<HostCounters>) {
        out.clear();
        out.extend(self.hosts().copied());
    }

    /// Moves every host's per-category bytes to the layout of a new
    /// configuration: `origin[i]` is the index, before, of category `i`
    /// (`None`: new). Bytes of removed categories are dropped from the
    /// per-category split (the host's packets stay).
    pub fn remap(&mut self, origin: &[Option<usize>]) {
        for e in self.entries.iter_mut().filter(|e| e.tag != 0) {
            let before = e.bytes;
            e.bytes = [0; MAX_CATEGORIES];
            for (b, o) in e.bytes.iter_mut().zip(origin) {
                *b = o.and_then(|o| before.get(o).copied()).unwrap_or(0);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    /// 198.18.0.`last`, IPv4-mapped.
    pub(crate) fn v4(last: u8) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12..].copy_from_slice(&[198, 18, 0, last]);
        a
    }

    #[test]
    fn a_host_is_counted_per_category_with_its_addresses() {
        let mut t = HostTable::default();
        let mac = [2, 0, 0, 0, 0, 10];
        t.observe(77, mac, None, Some(&v4(10)), 3, 1500, at(1));
        t.observe(77, mac, None, Some(&v4(10)), 3, 100, at(2));
        t.observe(77, mac, None, Some(&[0x20; 16]), 5, 60, at(3));
        let hosts: Vec<_> = t.hosts().collect();
        assert_eq!(hosts.len(), 1);
        let h = hosts[0];
        assert_eq!(h.mac, mac);
        assert_eq!(h.packets, 3);
        assert_eq!((h.bytes[3], h.bytes[5], h.total_bytes()), (1600, 60, 1660));
        assert_eq!(h.addresses(), &[v4(10), [0x20; 16]]);
        assert_eq!(h.last_seen, at(3));
    }

    #[test]
    fn hosts_first_seen_at_time_zero_keep_their_entries() {
        let mut t = HostTable::default();
        t.observe(1, [2, 0, 0, 0, 0, 1], None, None, 0, 10, Instant::ZERO);
        t.observe(2, [2, 0, 0, 0, 0, 2], None, None, 0, 20, Instant::ZERO);
        assert_eq!(t.hosts().count(), 2);
    }

    #[test]
    fn group_addresses_are_no_hosts() {
        let mut t = HostTable::default();
        t.observe(3, [0x33, 0x33, 0, 0, 0, 2], None, None, 0, 10, at(1));
        t.observe(4, [0x01, 0, 0x5e, 0, 0, 0x16], None, None, 0, 10, at(1));
        t.observe(5, [0xff; 6], None, None, 0, 10, at(1));
        assert_eq!(t.hosts().count(), 0);
    }

    #[test]
    fn two_macs_with_one_tag_are_two_hosts() {
        let mut t = HostTable::default();
        t.observe(5, [2, 0, 0, 0, 0, 1], None, None, 0, 10, at(1));
        t.observe(5, [2, 0, 0, 0, 0, 2], None, None, 0, 20, at(2));
        t.observe(5, [2, 0, 0, 0, 0, 1], Some(7), None, 0, 40, at(3));
        let mut bytes: Vec<u64> = t.hosts().map(|h| h.bytes[0]).collect();
        bytes.sort_unstable();
        assert_eq!(bytes, [10, 20, 40]);
    }

    #[test]
    fn a_flood_of_macs_recycles_the_oldest_and_keeps_the_busy_host() {
        let mut t = HostTable::default();
        let busy = [2, 0, 0, 0, 0, 1];
        for i in 0..100_000u32 {
            let now = at(u64::from(i));
            t.observe(0x1234_5678, busy, None, None, 0, 100, now);
            let m = i.to_be_bytes();
            let spoofed = [6, 0, m[0], m[1], m[2], m[3]];
            let tag = i.wrapping_mul(0x9E37_79B9) | 1;
            t.observe(tag, spoofed, None, None, 0, 60, now);
        }
        assert!(t.hosts().count() <= HOST_CAPACITY);
        let b = t
            .hosts()
            .find(|h| h.mac == busy)
            .expect("the busy host stays");
        assert_eq!(b.packets, 100_000);
    }

    #[test]
    fn addresses_keep_the_newest_four() {
        let mut t = HostTable::default();
        for i in 0..6u8 {
            t.observe(9, [2; 6], None, Some(&v4(i)), 0, 1, at(u64::from(i)));
        }
        let h = t.hosts().next().unwrap();
        let mut got = h.addresses().to_vec();
        got.sort_unstable();
        assert_eq!(got, [v4(2), v4(3), v4(4), v4(5)]);
        // One seen again (2) counts as the newest: the next new one
        // replaces the one after it round the ring (3), not it.
        t.observe(9, [2; 6], None, Some(&v4(2)), 0, 1, at(7));
        t.observe(9, [2; 6], None, Some(&v4(9)), 0, 1, at(8));
        let mut got = t.hosts().next().unwrap().addresses().to_vec();
        got.sort_unstable();
        assert_eq!(got, [v4(2), v4(4), v4(5), v4(9)]);
    }

    #[test]
    fn a_reload_moves_the_category_split_by_name() {
        let mut t = HostTable::default();
        t.observe(9, [2; 6], None, None, 0, 10, at(1));
        t.observe(9, [2; 6], None, None, 1, 20, at(1));
        // Category 1 becomes 0; category 0 is removed; 1 is new.
        t.remap(&[Some(1), None]);
        let h = t.hosts().next().unwrap();
        assert_eq!((h.bytes[0], h.bytes[1]), (20, 0));
    }
}
