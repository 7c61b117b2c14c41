//! The built-in office: who talks to whom, how (calls, video, bulk TCP
//! transfers, DNS), and when each flow starts.

use std::time::Duration;

use super::frames::Endpoint;
use super::tcp::Conn;
use crate::config::{CategoryId, Direction};

/// One-way delay between the office and the Internet servers, outside the
/// queues (half the base round trip), unless `--rtt` or a trace says.
pub(super) const ONE_WAY: Duration = Duration::from_millis(15);

/// What a simulated flow does.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    /// A call: one RTP packet of `payload` bytes each way every `interval`.
    Call {
        interval: Duration,
        payload: usize,
        pt: u8,
    },
    /// A video call: `fps` frames per second of `up`/`down` bits per second,
    /// each frame split into packets of at most 1200 bytes.
    Video {
        fps: u32,
        up_bps: u64,
        down_bps: u64,
    },
    /// A greedy TCP transfer toward `dir`, opened with a ClientHello for `sni`.
    Bulk { dir: Direction, sni: &'static str },
    /// A DNS query and answer every `interval`.
    Dns { interval: Duration },
}

/// One flow of the office: its ends, what it does and its state.
#[derive(Debug, Clone)]
pub(super) struct SimFlow {
    pub(super) client: Endpoint,
    pub(super) server: Endpoint,
    pub(super) kind: Kind,
    /// A bulk flow's connection, once started.
    pub(super) conn: Option<Box<Conn>>,
    pub(super) rtp_seq: u16,
    /// The id of the last DNS query.
    pub(super) dns_id: u16,
    pub(super) start: Duration,
    /// The category qosd last gave the flow, per direction (for what the
    /// line drops before qosd sees it).
    pub(super) category: [Option<CategoryId>; 2],
}

/// The built-in office: three G.711 calls, a Teams video call (with its
/// audio), a SharePoint upload, four browsing downloads, a YouTube video, a
/// Windows Update download, a cloud backup upload, and DNS.
pub(super) fn office() -> Vec<SimFlow> {
    let lan = |host: u8, port: u16| ([192, 168, 1, host], port);
    let net = |a: u8, b: u8, c: u8, d: u8, port: u16| ([a, b, c, d], port);
    let mut flows = Vec::new();
    let mut add = |client, server, kind, start_ms: u64| {
        flows.push(SimFlow {
            client,
            server,
            kind,
            conn: None,
            rtp_seq: 0,
            dns_id: 0,
            start: Duration::from_millis(start_ms),
            category: [None; 2],
        })
    };
    for i in 0..3u8 {
        // Desk phones talking G.711 (PCMU) to the carrier's SBC.
        add(
            lan(50 + i, 16384 + 2 * u16::from(i)),
            net(203, 0, 113, 10, 20000 + 2 * u16::from(i)),
            Kind::Call {
                interval: Duration::from_millis(20),
                payload: 160,
                pt: 0,
            },
            5 + u64::from(i),
        );
    }
    // A Teams meeting: audio from client port 50000, video from 50020,
    // to Microsoft's media relays.
    add(
        lan(60, 50000),
        net(52, 113, 10, 5, 3478),
        Kind::Call {
            interval: Duration::from_millis(20),
            payload: 120,
            pt: 111,
        },
        10,
    );
    add(
        lan(60, 50020),
        net(52, 113, 10, 5, 3479),
        Kind::Video {
            fps: 30,
            up_bps: 1_500_000,
            down_bps: 2_500_000,
        },
        12,
    );
    add(
        lan(20, 51000),
        net(52, 104, 0, 10, 443),
        Kind::Bulk {
            dir: Direction::Upload,
            sni: "contoso.sharepoint.com",
        },
        100,
    );
    for i in 0..4u8 {
        add(
            lan(30 + i, 52000 + u16::from(i)),
            net(93, 184, 216, 10 + i, 443),
            Kind::Bulk {
                dir: Direction::Download,
                sni: "www.example.org",
            },
            200 + 50 * u64::from(i),
        );
    }
    add(
        lan(40, 53000),
        net(142, 250, 74, 10, 443),
        Kind::Bulk {
            dir: Direction::Download,
            sni: "rr3---sn-4g5e6nsz.googlevideo.com",
        },
        300,
    );
    add(
        lan(41, 54000),
        net(13, 107, 4, 50, 443),
        Kind::Bulk {
            dir: Direction::Download,
            sni: "7.tlu.dl.delivery.mp.microsoft.com",
        },
        400,
    );
    add(
        lan(42, 55000),
        net(45, 11, 36, 20, 443),
        Kind::Bulk {
            dir: Direction::Upload,
            sni: "pod-000-1126-02.backblaze.com",
        },
        500,
    );
    add(
        lan(2, 40053),
        net(9, 9, 9, 9, 53),
        Kind::Dns {
            interval: Duration::from_millis(500),
        },
        1,
    );
    flows
}
