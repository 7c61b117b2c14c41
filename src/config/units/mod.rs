//! Value types admins write in the config file, with their parsers and
//! canonical spellings: rates ("20 Mbit"), shares of the link ("30%"), DSCP
//! code points ("EF"), port ranges ("50000-50019"), IP protocols ("udp"),
//! host-name patterns ("*.sharepoint.com"), HTTP condition texts (".m3u8"), durations ("300s") and
//! amounts of memory ("32 MiB").
//!
//! Every parser returns a message meant for an admin; the caller adds the
//! file and key path.

mod direction;
mod duration;
mod header;
mod host;
mod http;
mod number;
mod rate;
mod size;

pub use direction::Direction;
pub use duration::{parse_duration, serialize_duration};
pub use header::{Dscp, PortRange, Protocol};
pub use host::HostPattern;
pub use http::{
    HTTP_METHODS, MAX_HTTP_TEXT, parse_http_content_type, parse_http_method,
    parse_http_path_suffix, parse_http_user_agent,
};
pub use rate::{Bandwidth, MAX_RATE_BPS, Rate};
pub use size::{ByteSize, MAX_BYTE_SIZE};
