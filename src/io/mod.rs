//! The edges where frames enter and leave: captures (`pcap`), and later the
//! raw sockets of the daemon and the simulator's traffic.

pub mod afpacket;
pub mod netdev;
pub mod pcap;
pub mod ring;
