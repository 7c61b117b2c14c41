//! The edges where frames enter and leave: the daemon's raw sockets
//! (`afpacket`, `ring`, `xdp`), the state of its interfaces (`link`, `netdev`),
//! and captures (`pcap`).

pub mod afpacket;
pub mod link;
pub mod netdev;
pub mod pcap;
pub mod ring;
pub mod xdp;
