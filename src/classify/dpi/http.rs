//! HTTP/1.x sniffing: the host name a client asks a plain-HTTP server (or a
//! proxy) for, from the Host header of its first request; what that request
//! says besides (method, path, User-Agent) and the Content-Type of the
//! server's first response, for the catalog's HTTP signatures.
//!
//! Zero-copy, allocation-free, bounds-checked. Only request and status
//! lines and headers are looked at; bodies are never read.

use super::Parse;

/// Request methods recognised: RFC 9110 plus the WebDAV methods that
/// SharePoint / OneDrive (and other document stores) use over HTTP.
const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"HEAD",
    b"PUT",
    b"DELETE",
    b"OPTIONS",
    b"PATCH",
    b"CONNECT",
    b"TRACE",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
];

/// Headers larger than this are not waited for: a request whose Host has
/// not shown up within this many bytes is given up on (`NotThis`).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// True if `payload` starts with a known method followed by a space: cheap
/// enough to run on the first payload of every TCP flow.
pub fn is_http_request_start(payload: &[u8]) -> bool {
    method_len(payload).is_some()
}

/// Length of the method at the start of `payload`, if it is a known one
/// followed by a space.
fn method_len(payload: &[u8]) -> Option<usize> {
    METHODS.iter().find_map(|m| {
        let n = m.len();
        (payload.get(..n) == Some(*m) && payload.get(n) == Some(&b' ')).then_some(n)
    })
}

/// True if `payload` (shorter than any method + space) could still become
/// one: the start of a request cut by segmentation.
fn could_be_method_prefix(payload: &[u8]) -> bool {
    METHODS.iter().any(|m| {
        let mut full = [0u8; 10];
        let n = m.len().min(9);
        if let (Some(dst), Some(src)) = (full.get_mut(..n), m.get(..n)) {
            dst.copy_from_slice(src);
        }
        if let Some(sp) = full.get_mut(n) {
            *sp = b' ';
        }
        payload.len() <= n && full.get(..payload.len()) == Some(payload)
    })
}

/// Finds the end of the line that starts at `from`: returns the offset of
/// the line's last content byte + 1 (CR or LF excluded) and the offset of
/// the next line. `None` if no LF yet.
fn line_at(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let rest = buf.get(from..)?;
    let lf = rest.iter().position(|&b| b == b'\n')?;
    let mut end = from + lf;
    if end > from && buf.get(end - 1) == Some(&b'\r') {
        end -= 1;
    }
    Some((end, from + lf + 1))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t');
    let Some(start) = start else { return &[] };
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or(&[])
}

/// Host part of an authority (`host`, `host:port`, `[v6]`, `[v6]:port`,
/// optionally `user@` in front): the name or address without port or
/// brackets. `None` if it is empty or has characters no host name has.
fn host_of_authority(auth: &[u8]) -> Option<&str> {
    let auth = match auth.iter().rposition(|&b| b == b'@') {
        Some(at) => auth.get(at + 1..)?,
        None => auth,
    };
    let host = if auth.first() == Some(&b'[') {
        let close = auth.iter().position(|&b| b == b']')?;
        let inner = auth.get(1..close)?;
        let after = auth.get(close + 1..)?;
        if !(after.is_empty() || valid_port(after)) {
            return None;
        }
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        inner
    } else {
        let host = match auth.iter().position(|&b| b == b':') {
            Some(colon) => {
                if !valid_port(auth.get(colon..)?) {
                    return None;
                }
                auth.get(..colon)?
            }
            None => auth,
        };
        if host.is_empty()
            || !host
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return None;
        }
        host
    };
    core::str::from_utf8(host).ok()
}

/// `:` followed by 0-5 digits (an empty port is allowed by RFC 3986).
fn valid_port(s: &[u8]) -> bool {
    s.first() == Some(&b':') && s.len() <= 6 && s.iter().skip(1).all(u8::is_ascii_digit)
}

/// Authority of an absolute-form target (`http://host:port/path`), or of
/// an authority-form target (`host:port`, CONNECT).
fn target_authority(target: &[u8], connect: bool) -> Option<&[u8]> {
    if connect {
        return Some(target);
    }
    let sep = target.windows(3).position(|w| w == b"://")?;
    let scheme = target.get(..sep)?;
    if !scheme.iter().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let rest = target.get(sep + 3..)?;
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    rest.get(..end)
}

/// Why a request's start was not read: both answers a parser may give
/// before it has anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    NeedMore,
    NotThis,
}

impl<T> From<Stop> for Parse<T> {
    fn from(s: Stop) -> Self {
        match s {
            Stop::NeedMore => Parse::NeedMore,
            Stop::NotThis => Parse::NotThis,
        }
    }
}

/// A request's method and request line, read.
struct RequestStart<'a> {
    /// Length of the method.
    method_len: usize,
    /// The bytes looked at: at most [`MAX_HEADER_BYTES`].
    window: &'a [u8],
    /// What an unfinished header block means: more to come, or (past the
    /// cap) nothing more will be read.
    need_more: Stop,
    /// The request target.
    target: &'a [u8],
    /// Where the header lines start.
    pos: usize,
}

/// The method and request line every request parser starts with.
fn request_start(payload: &[u8]) -> Result<RequestStart<'_>, Stop> {
    let Some(method_len) = method_len(payload) else {
        return Err(if could_be_method_prefix(payload) {
            Stop::NeedMore
        } else {
            Stop::NotThis
        });
    };
    let window = payload.get(..MAX_HEADER_BYTES).unwrap_or(payload);
    let need_more = if window.len() < payload.len() {
        Stop::NotThis
    } else {
        Stop::NeedMore
    };
    let Some((line_end, pos)) = line_at(window, 0) else {
        return Err(if request_line_prefix_ok(window, method_len) {
            need_more
        } else {
            Stop::NotThis
        });
    };
    let target = window
        .get(..line_end)
        .and_then(|line| parse_request_line(line, method_len))
        .ok_or(Stop::NotThis)?;
    Ok(RequestStart {
        method_len,
        window,
        need_more,
        target,
        pos,
    })
}

/// The host an HTTP/1.x request is for.
///
/// The request line must be `METHOD SP request-target SP HTTP/1.x`. The
/// first `Host` header (name case-insensitive, value trimmed) gives the host,
/// port removed, IPv6 literal without brackets; its case is kept (compare
/// case-insensitively). Without a Host header, an absolute-form target
/// (requests to a proxy) or a CONNECT target gives it.
///
/// `NeedMore` if the bytes are a (possibly partial) request whose header
/// block has not ended yet and no complete Host line has been seen;
/// `NotThis` if they are not an HTTP/1.x request, the header block ended
/// without a usable host, or [`MAX_HEADER_BYTES`] went by without one.
pub fn request_host(payload: &[u8]) -> Parse<&str> {
    let start = match request_start(payload) {
        Ok(start) => start,
        Err(stop) => return stop.into(),
    };
    let (window, need_more, target, mut pos) =
        (start.window, start.need_more, start.target, start.pos);
    let connect = payload.get(..start.method_len) == Some(b"CONNECT".as_slice());

    // Header lines.
    loop {
        let Some((end, next)) = line_at(window, pos) else {
            return need_more.into();
        };
        let Some(line) = window.get(pos..end) else {
            return Parse::NotThis;
        };
        if line.is_empty() {
            // End of headers, no Host: try the request target.
            return match target_authority(target, connect).and_then(host_of_authority) {
                Some(h) => Parse::Found(h),
                None => Parse::NotThis,
            };
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = line.get(..colon).unwrap_or(&[]);
            if name.eq_ignore_ascii_case(b"host") {
                let value = trim(line.get(colon + 1..).unwrap_or(&[]));
                return match host_of_authority(value) {
                    Some(h) => Parse::Found(h),
                    None => Parse::NotThis,
                };
            }
        }
        pos = next;
    }
}

/// What the line and headers of a client's first request say, for HTTP
/// signatures. Every field borrows from the bytes parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method, one of the recognised ones.
    pub method: &'a str,
    /// The request target as written (origin-form `/a/b?q`, absolute-form
    /// `http://host/a`, authority-form for CONNECT, or `*`).
    pub target: &'a str,
    /// The host, as [`request_host`] reads it; `None` when the request
    /// names none (HTTP/1.0) or an unusable one.
    pub host: Option<&'a str>,
    /// The first User-Agent header's value, trimmed; `None` without one
    /// (or when it is not UTF-8).
    pub user_agent: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// The path of the target without query or fragment: `/live/a.m3u8`
    /// of `/live/a.m3u8?token=1` and of `http://cdn.example/live/a.m3u8`;
    /// empty for CONNECT's authority-form and for `*`. Not percent-decoded:
    /// signatures match the path as the client wrote it.
    pub fn path(&self) -> &'a str {
        let t = self.target;
        let from_slash = if t.starts_with('/') {
            t
        } else {
            match t.find("://") {
                Some(sep) => {
                    let rest = t.get(sep + 3..).unwrap_or_default();
                    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                    let after = rest.get(end..).unwrap_or_default();
                    if after.starts_with('/') { after } else { "" }
                }
                None => "",
            }
        };
        let end = from_slash.find(['?', '#']).unwrap_or(from_slash.len());
        from_slash.get(..end).unwrap_or_default()
    }
}

/// The method, target, host and User-Agent of an HTTP/1.x request.
///
/// Unlike [`request_host`], which answers as soon as the Host line is
/// complete, this reads the whole header block: `Found` once the blank
/// line that ends it is in `payload`, `NeedMore` before (a request cut by
/// segmentation), `NotThis` if the bytes are not an HTTP/1.x request or
/// [`MAX_HEADER_BYTES`] went by without the block ending.
pub fn request_facts(payload: &[u8]) -> Parse<Request<'_>> {
    let start = match request_start(payload) {
        Ok(start) => start,
        Err(stop) => return stop.into(),
    };
    let (window, need_more, target, mut pos, mlen) = (
        start.window,
        start.need_more,
        start.target,
        start.pos,
        start.method_len,
    );
    // Both are ASCII: the method is a known one, the target's bytes were
    // checked to be visible ASCII.
    let (Some(method), Ok(target_str)) = (
        window
            .get(..mlen)
            .and_then(|m| core::str::from_utf8(m).ok()),
        core::str::from_utf8(target),
    ) else {
        return Parse::NotThis;
    };
    let mut host_value = None;
    let mut user_agent = None;
    loop {
        let Some((end, next)) = line_at(window, pos) else {
            return need_more.into();
        };
        let Some(line) = window.get(pos..end) else {
            return Parse::NotThis;
        };
        if line.is_empty() {
            break;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = line.get(..colon).unwrap_or(&[]);
            let value = || trim(line.get(colon + 1..).unwrap_or(&[]));
            if host_value.is_none() && name.eq_ignore_ascii_case(b"host") {
                host_value = Some(value());
            } else if user_agent.is_none() && name.eq_ignore_ascii_case(b"user-agent") {
                user_agent = Some(value());
            }
        }
        pos = next;
    }
    let host = match host_value {
        Some(v) => host_of_authority(v),
        None => target_authority(target, method == "CONNECT").and_then(host_of_authority),
    };
    Parse::Found(Request {
        method,
        target: target_str,
        host,
        user_agent: user_agent.and_then(|v| core::str::from_utf8(v).ok()),
    })
}

/// The media type of the Content-Type of a server's first response to an
/// HTTP/1.x request: `video/mp4` of `Content-Type: video/mp4;
/// codecs="avc1"` (parameters and surrounding whitespace removed, case
/// kept: compare case-insensitively).
///
/// Interim responses (1xx: `100 Continue`, `103 Early Hints`) are skipped
/// to the final one. `Found(None)` when the final response's headers end
/// without a Content-Type (or with an unusable one), and for `101
/// Switching Protocols` (the stream is no longer HTTP); `NeedMore` while
/// the status line or the headers before a Content-Type are incomplete;
/// `NotThis` if the bytes are not an HTTP/1.x response or
/// [`MAX_HEADER_BYTES`] went by without an answer.
pub fn response_content_type(payload: &[u8]) -> Parse<Option<&str>> {
    let window = payload.get(..MAX_HEADER_BYTES).unwrap_or(payload);
    let need_more = if window.len() < payload.len() {
        Parse::NotThis
    } else {
        Parse::NeedMore
    };
    let mut pos = 0;
    // One response head per turn: each consumes at least its status line,
    // so the loop ends within the window.
    loop {
        let Some((line_end, next)) = line_at(window, pos) else {
            return match status_line_prefix_ok(window.get(pos..).unwrap_or_default()) {
                true => need_more,
                false => Parse::NotThis,
            };
        };
        let Some(status) = window.get(pos..line_end).and_then(parse_status_line) else {
            return Parse::NotThis;
        };
        if status == 101 {
            return Parse::Found(None);
        }
        let interim = status < 200;
        pos = next;
        loop {
            let Some((end, next)) = line_at(window, pos) else {
                return need_more;
            };
            let Some(line) = window.get(pos..end) else {
                return Parse::NotThis;
            };
            pos = next;
            if line.is_empty() {
                if interim {
                    break;
                }
                return Parse::Found(None);
            }
            if !interim
                && let Some(colon) = line.iter().position(|&b| b == b':')
                && line
                    .get(..colon)
                    .is_some_and(|n| n.eq_ignore_ascii_case(b"content-type"))
            {
                let value = line.get(colon + 1..).unwrap_or(&[]);
                return Parse::Found(media_type(value));
            }
        }
    }
}

/// The media type of a Content-Type value: what comes before any `;`,
/// trimmed; `None` if empty or not visible ASCII.
fn media_type(value: &[u8]) -> Option<&str> {
    let end = value.iter().position(|&b| b == b';').unwrap_or(value.len());
    let t = trim(value.get(..end)?);
    if t.is_empty() || !t.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return None;
    }
    core::str::from_utf8(t).ok()
}

/// The status code of `HTTP/1.d SP 3DIGIT [SP reason]`.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    if !minor.is_ascii_digit() {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || !matches!(rest.get(3), None | Some(b' ')) {
        return None;
    }
    let code = code
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    (100..=599).contains(&code).then_some(code)
}

/// For a status line not yet terminated: could `buf` still become one
/// (`HTTP/1.d SP 3DIGIT ...`)?
fn status_line_prefix_ok(buf: &[u8]) -> bool {
    const VERSION: &[u8] = b"HTTP/1.";
    let n = buf.len().min(VERSION.len());
    if buf.get(..n) != VERSION.get(..n) {
        return false;
    }
    let rest = buf.get(VERSION.len()..).unwrap_or_default();
    rest.first().is_none_or(u8::is_ascii_digit)
        && rest.get(1).is_none_or(|&b| b == b' ')
        && rest
            .get(2..rest.len().min(5))
            .is_none_or(|code| code.iter().all(u8::is_ascii_digit))
}

/// Checks `METHOD SP target SP HTTP/1.d` and returns the target.
fn parse_request_line(line: &[u8], mlen: usize) -> Option<&[u8]> {
    let rest = line.get(mlen + 1..)?;
    let sp = rest.iter().position(|&b| b == b' ')?;
    let target = rest.get(..sp)?;
    if target.is_empty() || !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return None;
    }
    let version = rest.get(sp + 1..)?;
    match version {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if d.is_ascii_digit() => Some(target),
        _ => None,
    }
}

/// For a request line not yet terminated: is what we have so far a
/// plausible beginning (`METHOD SP target-chars [SP [HTTP/1.d]]`)?
fn request_line_prefix_ok(buf: &[u8], mlen: usize) -> bool {
    let Some(rest) = buf.get(mlen + 1..) else {
        return true;
    };
    let (target, version) = match rest.iter().position(|&b| b == b' ') {
        Some(sp) => (rest.get(..sp), rest.get(sp + 1..)),
        None => (Some(rest), None),
    };
    let target_ok = target.is_some_and(|t| t.iter().all(|&b| (0x21..=0x7e).contains(&b)));
    let version_ok = version.is_none_or(|v| {
        let want = b"HTTP/1.";
        let n = v.len().min(want.len());
        v.get(..n) == want.get(..n)
            && v.len() <= want.len() + 2
            && v.get(want.len()).is_none_or(u8::is_ascii_digit)
            && v.get(want.len() + 1).is_none_or(|&b| b == b'\r')
    });
    target_ok && version_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // http.pcapng #4 (curl to google.com).
    const CURL: &[u8] =
        b"GET / HTTP/1.1\r\nHost: google.com\r\nUser-Agent: curl/7.68.0\r\nAccept: */*\r\n\r\n";
    // conncheck.pcap #6: Host is the fourth header.
    const CONNCHECK: &[u8] = b"GET /generate_204 HTTP/1.1\r\nConnection: close\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/60.0.3112.32 Safari/537.36\r\nHost: www.google.eu\r\nAccept-Encoding: gzip\r\n\r\n";
    // soap.pcap #5 headers (the body follows in the real segment).
    const SOAP: &[u8] = b"POST /fwlink/?LinkID=252669&clcid=0x409 HTTP/1.1\r\nConnection: Keep-Alive\r\nContent-Type: text/xml; charset=\"UTF-16LE\"\r\nUser-Agent: MICROSOFT_DEVICE_METADATA_RETRIEVAL_CLIENT\r\nSOAPAction: \"http://schemas.microsoft.com/windowsmetadata/services/2007/09/18/dms/DeviceMetadataService/GetDeviceMetadata\"\r\nContent-Length: 3612\r\nHost: go.microsoft.com\r\n\r\n<?xml version=\"1.0\" encoding=\"utf-16\"?>";
    // anyconnect-vpn.pcap #512: Host with an IPv4 address and a port.
    const DIAL: &[u8] = b"GET /dial/dd.xml HTTP/1.1\r\nHost: 10.0.0.151:8060\r\nConnection: keep-alive\r\nUser-Agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 10_13_6) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/77.0.3865.90 Safari/537.36\r\nAccept-Encoding: gzip, deflate\r\n\r\n";
    // anyconnect-vpn.pcap #350: the segment ends before the blank line.
    const PORTAL: &[u8] = b"GET /success.txt HTTP/1.1\r\nHost: detectportal.firefox.com\r\nUser-Agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 10.13; rv:69.0) Gecko/20100101 Firefox/69.0\r\nAccept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\nCache-Control: no-cache\r\nPragma: no-cache\r\nConnection: keep-alive\r\n";
    // rtsp_setup_http.pcapng #1: RTSP, not HTTP.
    const RTSP: &[u8] = b"SETUP rtsp://172.28.4.26:8554/trackID=88 RTSP/1.0\r\nCSeq: 4\r\nUser-Agent: LibVLC/3.0.16 (LIVE555 Streaming Media v2016.11.28)\r\nTransport: RTP/AVP;unicast;client_port=50220-50221\r\n\r\n";
    // sip_hello.pcapng #9 (start): SIP, not HTTP.
    const SIP: &[u8] = b"REGISTER sip:10.192.60.4 SIP/2.0\r\nFrom: \"2684194\"\r\n\r\n";

    #[test]
    fn real_requests() {
        assert_eq!(request_host(CURL), Parse::Found("google.com"));
        assert_eq!(request_host(CONNCHECK), Parse::Found("www.google.eu"));
        assert_eq!(request_host(SOAP), Parse::Found("go.microsoft.com"));
        assert_eq!(request_host(DIAL), Parse::Found("10.0.0.151"));
        assert_eq!(
            request_host(PORTAL),
            Parse::Found("detectportal.firefox.com")
        );
        for r in [CURL, CONNCHECK, SOAP, DIAL, PORTAL] {
            assert!(is_http_request_start(r));
        }
    }

    #[test]
    fn other_protocols_are_not_http() {
        assert_eq!(request_host(RTSP), Parse::NotThis);
        assert_eq!(request_host(SIP), Parse::NotThis);
        assert!(!is_http_request_start(RTSP));
        assert!(!is_http_request_start(SIP));
        assert!(!is_http_request_start(b"HTTP/1.1 200 OK\r\n"));
        assert_eq!(request_host(b"HTTP/1.1 200 OK\r\n\r\n"), Parse::NotThis);
        assert_eq!(request_host(b"\x16\x03\x01\x02\x00\x01"), Parse::NotThis);
        assert_eq!(
            request_host(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Parse::NotThis
        );
        assert_eq!(
            request_host(b"GET / HTTP/2\r\nHost: a\r\n\r\n"),
            Parse::NotThis
        );
        assert_eq!(
            request_host(b"get / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Parse::NotThis
        );
        assert_eq!(
            request_host(b"GET  HTTP/1.1\r\nHost: a\r\n\r\n"),
            Parse::NotThis
        );
    }

    #[test]
    fn every_prefix_needs_more_until_the_host_line_ends() {
        let host_end = CONNCHECK
            .windows(17)
            .position(|w| w == b"www.google.eu\r\nAc")
            .unwrap()
            + 15;
        for n in 0..CONNCHECK.len() {
            let got = request_host(&CONNCHECK[..n]);
            if n < host_end {
                assert_eq!(got, Parse::NeedMore, "prefix {n}");
            } else {
                assert_eq!(got, Parse::Found("www.google.eu"), "prefix {n}");
            }
        }
    }

    #[test]
    fn host_forms() {
        let h = |v: &str| {
            let req = format!("GET / HTTP/1.1\r\nhOsT:{v}\r\n\r\n");
            match request_host(req.as_bytes()) {
                Parse::Found(h) => Some(h.to_string()),
                _ => None,
            }
        };
        assert_eq!(
            h(" Teams.Microsoft.com "),
            Some("Teams.Microsoft.com".into())
        );
        assert_eq!(h("\texample.com:8080"), Some("example.com".into()));
        assert_eq!(h("[2001:db8::1]:443"), Some("2001:db8::1".into()));
        assert_eq!(h("[2001:db8::1]"), Some("2001:db8::1".into()));
        assert_eq!(h("example.com:"), Some("example.com".into()));
        assert_eq!(h("user@example.com"), Some("example.com".into()));
        assert_eq!(h(""), None);
        assert_eq!(h("[2001:db8::1"), None);
        assert_eq!(h("[::1]x"), None);
        assert_eq!(h("a:b:c"), None);
        assert_eq!(h("exa mple.com"), None);
        assert_eq!(h("example.com:99999999"), None);
    }

    #[test]
    fn lf_only_and_no_host() {
        assert_eq!(
            request_host(b"HEAD /x HTTP/1.0\nHost: lf.example\n\n"),
            Parse::Found("lf.example")
        );
        // HTTP/1.0 without Host: nothing to report.
        assert_eq!(request_host(b"GET / HTTP/1.0\r\n\r\n"), Parse::NotThis);
        // Absolute-form to a proxy.
        assert_eq!(
            request_host(b"GET http://proxy.example:3128/a?b HTTP/1.1\r\nAccept: */*\r\n\r\n"),
            Parse::Found("proxy.example")
        );
        // CONNECT authority-form.
        assert_eq!(
            request_host(b"CONNECT outlook.office365.com:443 HTTP/1.1\r\nUser-Agent: x\r\n\r\n"),
            Parse::Found("outlook.office365.com")
        );
        // Host wins over the target.
        assert_eq!(
            request_host(b"CONNECT a.example:443 HTTP/1.1\r\nHost: b.example:443\r\n\r\n"),
            Parse::Found("b.example")
        );
        // WebDAV (SharePoint).
        assert_eq!(
            request_host(b"PROPFIND /sites/x HTTP/1.1\r\nHost: contoso.sharepoint.com\r\n\r\n"),
            Parse::Found("contoso.sharepoint.com")
        );
    }

    #[test]
    fn partial_request_line() {
        assert_eq!(request_host(b""), Parse::NeedMore);
        assert_eq!(request_host(b"G"), Parse::NeedMore);
        assert_eq!(request_host(b"PROPF"), Parse::NeedMore);
        assert_eq!(request_host(b"GET"), Parse::NeedMore);
        assert_eq!(request_host(b"GET /ab"), Parse::NeedMore);
        assert_eq!(request_host(b"GET /ab HTT"), Parse::NeedMore);
        assert_eq!(request_host(b"GET /ab HTTP/1.1\r"), Parse::NeedMore);
        assert_eq!(request_host(b"GET /ab RTSP"), Parse::NotThis);
        assert_eq!(request_host(b"GET /a\x01"), Parse::NotThis);
        assert_eq!(request_host(b"GEX"), Parse::NotThis);
        assert_eq!(request_host(b"\x80"), Parse::NotThis);
    }

    #[test]
    fn huge_headers_are_given_up_on() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        while req.len() < MAX_HEADER_BYTES + 100 {
            req.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(request_host(&req), Parse::NotThis);
        assert_eq!(request_host(&req[..MAX_HEADER_BYTES - 10]), Parse::NeedMore);
    }

    /// The configuration refuses HTTP methods this parser does not read,
    /// from a list of its own: both must be the same.
    #[test]
    fn methods_agree_with_the_configuration() {
        let parser: Vec<&[u8]> = METHODS.to_vec();
        let config: Vec<&[u8]> = crate::config::units::HTTP_METHODS
            .iter()
            .map(|m| m.as_bytes())
            .collect();
        assert_eq!(parser, config);
    }

    #[test]
    fn request_facts_of_real_requests() {
        let Parse::Found(r) = request_facts(CURL) else {
            panic!()
        };
        assert_eq!(
            r,
            Request {
                method: "GET",
                target: "/",
                host: Some("google.com"),
                user_agent: Some("curl/7.68.0"),
            }
        );
        let Parse::Found(r) = request_facts(SOAP) else {
            panic!()
        };
        assert_eq!(r.method, "POST");
        assert_eq!(r.path(), "/fwlink/");
        assert_eq!(
            r.user_agent,
            Some("MICROSOFT_DEVICE_METADATA_RETRIEVAL_CLIENT")
        );
        assert_eq!(r.host, Some("go.microsoft.com"));
        // No blank line yet: the headers may go on.
        assert_eq!(request_facts(PORTAL), Parse::NeedMore);
        assert_eq!(request_facts(RTSP), Parse::NotThis);
        assert_eq!(request_facts(SIP), Parse::NotThis);
        assert_eq!(request_facts(b"\x16\x03\x01\x02\x00"), Parse::NotThis);
    }

    #[test]
    fn request_facts_without_host_or_user_agent() {
        let Parse::Found(r) = request_facts(b"PROPFIND /dav/ HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert_eq!((r.method, r.host, r.user_agent), ("PROPFIND", None, None));
        // An unusable Host leaves the host unknown, the rest is read.
        let Parse::Found(r) =
            request_facts(b"GET /a.m3u8 HTTP/1.1\r\nHost: a b\r\nuser-AGENT:  x/1 \r\n\r\n")
        else {
            panic!()
        };
        assert_eq!(
            (r.path(), r.host, r.user_agent),
            ("/a.m3u8", None, Some("x/1"))
        );
        // The first of repeated headers counts; absolute-form gives the host.
        let Parse::Found(r) = request_facts(
            b"GET http://cdn.example/v/seg.ts?x=1 HTTP/1.1\nUser-Agent: a\nUser-Agent: b\n\n",
        ) else {
            panic!()
        };
        assert_eq!(
            (r.host, r.user_agent, r.path()),
            (Some("cdn.example"), Some("a"), "/v/seg.ts")
        );
    }

    #[test]
    fn paths_leave_out_query_fragment_and_authority() {
        let path = |target: &'static str| {
            Request {
                method: "GET",
                target,
                host: None,
                user_agent: None,
            }
            .path()
        };
        assert_eq!(path("/live/index.m3u8?token=a.mp4"), "/live/index.m3u8");
        assert_eq!(path("/a.mpd#t=1"), "/a.mpd");
        assert_eq!(path("http://h:8080/x/y.deb"), "/x/y.deb");
        assert_eq!(path("http://h?q=/x.deb"), "");
        assert_eq!(path("http://h"), "");
        assert_eq!(path("h.example:443"), "");
        assert_eq!(path("*"), "");
    }

    /// A request cut anywhere reads as incomplete until its blank line,
    /// then in full.
    #[test]
    fn request_facts_need_the_whole_header_block() {
        for n in 0..=CONNCHECK.len() {
            let got = request_facts(&CONNCHECK[..n]);
            if n < CONNCHECK.len() {
                assert_eq!(got, Parse::NeedMore, "prefix {n}");
            } else {
                assert!(
                    matches!(got, Parse::Found(r) if r.host == Some("www.google.eu")),
                    "{n}"
                );
            }
        }
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        while req.len() < MAX_HEADER_BYTES + 100 {
            req.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(request_facts(&req), Parse::NotThis);
    }

    // A typical HLS playlist response (headers only).
    const HLS: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/vnd.apple.mpegurl; charset=utf-8\r\nContent-Length: 312\r\n\r\n#EXTM3U\n";

    #[test]
    fn response_media_types() {
        assert_eq!(
            response_content_type(HLS),
            Parse::Found(Some("application/vnd.apple.mpegurl"))
        );
        assert_eq!(
            response_content_type(b"HTTP/1.0 200 OK\r\ncontent-type:video/MP4\r\n\r\n"),
            Parse::Found(Some("video/MP4"))
        );
        assert_eq!(
            response_content_type(b"HTTP/1.1 204\r\nServer: x\r\n\r\n"),
            Parse::Found(None)
        );
        assert_eq!(
            response_content_type(b"HTTP/1.1 200 OK\r\nContent-Type: ;x\r\n\r\n"),
            Parse::Found(None)
        );
        // Interim responses are skipped to the final one.
        assert_eq!(
            response_content_type(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: audio/aac\r\n\r\n"
            ),
            Parse::Found(Some("audio/aac"))
        );
        assert_eq!(
            response_content_type(b"HTTP/1.1 100 Continue\r\n\r\n"),
            Parse::NeedMore
        );
        assert_eq!(
            response_content_type(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
            ),
            Parse::Found(None)
        );
    }

    #[test]
    fn responses_cut_short_or_not_http() {
        let ct_end = HLS.windows(9).position(|w| w == b"utf-8\r\nCo").unwrap() + 7;
        for n in 0..HLS.len() {
            let got = response_content_type(&HLS[..n]);
            if n < ct_end {
                assert_eq!(got, Parse::NeedMore, "prefix {n}");
            } else {
                assert_eq!(
                    got,
                    Parse::Found(Some("application/vnd.apple.mpegurl")),
                    "{n}"
                );
            }
        }
        for not in [
            &b"ICY 200 OK\r\n"[..],
            b"RTSP/1.0 200 OK\r\n",
            b"HTTP/2 200\r\n",
            b"HTTP/1.1 20x OK\r\n",
            b"HTTP/1.1 2000 OK\r\n",
            b"HTTP/1.1 099 x\r\n",
            b"HTTP/1.1 200 OK\r\nbad\x00",
            b"\x16\x03\x03",
            b"HTTP/1.1 2a",
        ] {
            let got = response_content_type(not);
            assert!(
                got == Parse::NotThis || (not.ends_with(b"\x00") && got == Parse::NeedMore),
                "{:?}: {got:?}",
                String::from_utf8_lossy(not)
            );
        }
        let mut resp = b"HTTP/1.1 200 OK\r\n".to_vec();
        while resp.len() < MAX_HEADER_BYTES + 100 {
            resp.extend_from_slice(b"Set-Cookie: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(response_content_type(&resp), Parse::NotThis);
        assert_eq!(
            response_content_type(&resp[..MAX_HEADER_BYTES - 10]),
            Parse::NeedMore
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = request_host(&b);
            let _ = is_http_request_start(&b);
            if let Parse::Found(r) = request_facts(&b) {
                let _ = r.path();
            }
            let _ = response_content_type(&b);
        }

        #[test]
        fn mutated_responses_never_panic(
            muts in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let mut b = HLS.to_vec();
            for (i, v) in muts {
                let n = b.len();
                b[i % n] = v;
            }
            let n = b.len();
            b.truncate(cut % (n + 1));
            if let Parse::Found(Some(ct)) = response_content_type(&b) {
                prop_assert!(!ct.is_empty() && !ct.contains(';'));
            }
        }

        #[test]
        fn mutated_real_requests_never_panic(
            which in 0usize..5,
            muts in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let mut b = [CURL, CONNCHECK, SOAP, DIAL, PORTAL][which].to_vec();
            for (i, v) in muts {
                let n = b.len();
                b[i % n] = v;
            }
            let n = b.len();
            b.truncate(cut % (n + 1));
            if let Parse::Found(h) = request_host(&b) {
                prop_assert!(!h.is_empty());
            }
            if let Parse::Found(r) = request_facts(&b) {
                prop_assert!(r.target.starts_with(r.path()) || r.target.contains(r.path()));
            }
        }

        #[test]
        fn generated_requests_find_their_host(
            host in "[a-z0-9][a-z0-9.-]{0,40}",
            port in proptest::option::of(0u16..),
            before in proptest::collection::vec("[A-Za-z-]{1,12}: [ -~]{0,30}", 0..5),
        ) {
            let mut req = String::from("GET /x HTTP/1.1\r\n");
            for h in before {
                if !h.to_ascii_lowercase().starts_with("host:") {
                    req.push_str(&h);
                    req.push_str("\r\n");
                }
            }
            match port {
                Some(p) => req.push_str(&format!("Host: {host}:{p}\r\n\r\n")),
                None => req.push_str(&format!("Host: {host}\r\n\r\n")),
            }
            prop_assert_eq!(request_host(req.as_bytes()), Parse::Found(host.as_str()));
        }
    }
}
