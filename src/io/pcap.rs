//! Reading captures: pcap and pcapng files (no libpcap), every frame handed
//! over as an Ethernet frame with its timestamp. Captures with other link
//! types (Linux cooked SLL/SLL2, raw IP, BSD loopback) get a synthetic
//! Ethernet header so the engine sees one format.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The capture's path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a pcap/pcapng capture, or is corrupt.
    #[error("{path}: not a readable pcap or pcapng capture: {message}")]
    Format {
        /// The capture's path.
        path: String,
        /// What the reader said.
        message: String,
    },
}

/// What reading a capture saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadStats {
    /// Frames handed to the callback.
    pub frames: u64,
    /// Frames skipped: unsupported link type or too short to convert.
    pub skipped: u64,
    /// Size of the file in bytes (for progress).
    pub file_bytes: u64,
}

/// Link-layer types this reader can turn into Ethernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Ethernet,
    RawIp,
    LinuxSll,
    LinuxSll2,
    Null,
    Unsupported,
}

fn link_of(dl: DataLink) -> Link {
    match dl {
        DataLink::ETHERNET => Link::Ethernet,
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Link::RawIp,
        DataLink::LINUX_SLL => Link::LinuxSll,
        DataLink::LINUX_SLL2 => Link::LinuxSll2,
        DataLink::NULL | DataLink::LOOP => Link::Null,
        _ => Link::Unsupported,
    }
}

/// Turns a captured frame into an Ethernet frame, in `buf` when a header
/// must be synthesised. Returns `None` when it cannot.
fn to_ethernet<'a>(link: Link, data: &'a [u8], buf: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    const MACS: [u8; 12] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    let (ether_type, payload) = match link {
        Link::Ethernet => return Some(data),
        Link::RawIp => {
            let version = data.first()? >> 4;
            let et = match version {
                4 => 0x0800u16,
                6 => 0x86dd,
                _ => return None,
            };
            (et, data)
        }
        // SLL: 16-byte header, protocol type in the last two bytes.
        Link::LinuxSll => (
            u16::from_be_bytes([*data.get(14)?, *data.get(15)?]),
            data.get(16..)?,
        ),
        // SLL2: 20-byte header, protocol type first.
        Link::LinuxSll2 => (
            u16::from_be_bytes([*data.first()?, *data.get(1)?]),
            data.get(20..)?,
        ),
        // BSD loopback: 4-byte address family in host order of the capturer.
        Link::Null => {
            let fam = u32::from_le_bytes(<[u8; 4]>::try_from(data.get(..4)?).ok()?);
            let fam = if fam > 0xffff { fam.swap_bytes() } else { fam };
            let et = match fam {
                2 => 0x0800u16,
                10 | 24 | 28 | 30 => 0x86dd,
                _ => return None,
            };
            (et, data.get(4..)?)
        }
        Link::Unsupported => return None,
    };
    buf.clear();
    buf.extend_from_slice(&MACS);
    buf.extend_from_slice(&ether_type.to_be_bytes());
    buf.extend_from_slice(payload);
    Some(buf)
}

/// Reads the capture at `path`, calling `f(timestamp, ethernet_frame)` for
/// every frame in file order. Timestamps are since the Unix epoch.
pub fn for_each_frame(
    path: &Path,
    mut f: impl FnMut(Duration, &[u8]),
) -> Result<ReadStats, PcapError> {
    let name = path.display().to_string();
    let io_err = |source| PcapError::Io {
        path: name.clone(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let file_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).map_err(io_err)?;
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let reader = BufReader::with_capacity(1 << 16, file);
    let format_err = |e: pcap_file::PcapError| PcapError::Format {
        path: name.clone(),
        message: e.to_string(),
    };
    let mut stats = ReadStats {
        file_bytes,
        ..ReadStats::default()
    };
    let mut buf = Vec::with_capacity(2048);

    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut reader = PcapNgReader::new(reader).map_err(format_err)?;
        // Per interface: link type and timestamp units per second.
        let mut interfaces: Vec<(Link, u64)> = Vec::new();
        while let Some(block) = reader.next_block() {
            let block = block.map_err(format_err)?;
            let (iface, ts, data) = match block {
                Block::SectionHeader(_) => {
                    interfaces.clear();
                    continue;
                }
                Block::InterfaceDescription(idb) => {
                    let mut per_sec = 1_000_000u64;
                    for opt in &idb.options {
                        if let InterfaceDescriptionOption::IfTsResol(r) = opt {
                            per_sec = if r & 0x80 == 0 {
                                10u64.checked_pow(u32::from(*r)).unwrap_or(1_000_000_000)
                            } else {
                                2u64.checked_pow(u32::from(r & 0x7f)).unwrap_or(1 << 30)
                            };
                        }
                    }
                    interfaces.push((link_of(idb.linktype), per_sec.max(1)));
                    continue;
                }
                Block::EnhancedPacket(epb) => (
                    epb.interface_id as usize,
                    epb.timestamp.as_nanos(),
                    epb.data,
                ),
                Block::SimplePacket(spb) => (0, 0, spb.data),
                Block::Packet(pb) => (
                    usize::from(pb.interface_id),
                    u128::from(pb.timestamp),
                    pb.data,
                ),
                _ => continue,
            };
            let Some(&(link, per_sec)) = interfaces.get(iface) else {
                stats.skipped += 1;
                continue;
            };
            // pcap-file reports the raw timestamp units as nanoseconds.
            let units = ts;
            let secs = units / u128::from(per_sec);
            let rem = units % u128::from(per_sec);
            let nanos = rem * 1_000_000_000 / u128::from(per_sec);
            let stamp = Duration::new(u64::try_from(secs).unwrap_or(u64::MAX), nanos as u32);
            match to_ethernet(link, &data, &mut buf) {
                Some(frame) => {
                    stats.frames += 1;
                    f(stamp, frame);
                }
                None => stats.skipped += 1,
            }
        }
    } else {
        let mut reader = PcapReader::new(reader).map_err(format_err)?;
        let link = link_of(reader.header().datalink);
        while let Some(pkt) = reader.next_packet() {
            let pkt = pkt.map_err(format_err)?;
            match to_ethernet(link, &pkt.data, &mut buf) {
                Some(frame) => {
                    stats.frames += 1;
                    f(pkt.timestamp, frame);
                }
                None => stats.skipped += 1,
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthesises_ethernet_for_raw_ip_and_sll() {
        let ip = [
            0x45u8, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ];
        let mut buf = Vec::new();
        let eth = to_ethernet(Link::RawIp, &ip, &mut buf).unwrap().to_vec();
        assert_eq!(&eth[12..14], &[0x08, 0x00]);
        assert_eq!(&eth[14..], &ip);

        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x86, 0xdd]);
        sll.extend_from_slice(&[0x60, 0, 0, 0]);
        let eth = to_ethernet(Link::LinuxSll, &sll, &mut buf)
            .unwrap()
            .to_vec();
        assert_eq!(&eth[12..16], &[0x86, 0xdd, 0x60, 0]);

        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip);
        assert_eq!(
            &to_ethernet(Link::Null, &null, &mut buf).unwrap()[12..14],
            &[8, 0]
        );
        // Garbage never panics.
        assert!(to_ethernet(Link::RawIp, &[], &mut buf).is_none());
        assert!(to_ethernet(Link::LinuxSll, &[1, 2], &mut buf).is_none());
        assert!(to_ethernet(Link::Unsupported, &ip, &mut buf).is_none());
    }

    #[test]
    fn not_a_capture_is_a_clear_error() {
        let path = std::env::temp_dir().join(format!("qosd-notpcap-{}", std::process::id()));
        std::fs::write(&path, b"this is not a capture file at all").unwrap();
        let err = for_each_frame(&path, |_, _| {}).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(err.to_string().contains("not a readable pcap"), "{err}");
        let err = for_each_frame(Path::new("/nonexistent.pcap"), |_, _| {}).unwrap_err();
        assert!(matches!(err, PcapError::Io { .. }));
    }
}
