//! Values of the catalog's HTTP conditions (`http_method`,
//! `http_path_suffix`, `http_user_agent`, `http_content_type`): what a
//! plain-HTTP request or response can be matched on, checked so that a
//! condition written in the catalog can match what the parser reads.

/// The request methods qosd's HTTP parser recognises (RFC 9110 and
/// WebDAV's, RFC 4918 and 3253/5323); a test in the parser holds its list
/// to this one. A condition on another method could never match.
pub const HTTP_METHODS: [&str; 18] = [
    "GET",
    "POST",
    "HEAD",
    "PUT",
    "DELETE",
    "OPTIONS",
    "PATCH",
    "CONNECT",
    "TRACE",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "REPORT",
    "SEARCH",
];

/// Longest text of an HTTP condition, in bytes: the identifying part of a
/// user agent or a media type is short, and a condition longer than a
/// request line's typical head would mostly never match.
pub const MAX_HTTP_TEXT: usize = 64;

/// An `http_method`: one of [`HTTP_METHODS`], as written (methods are
/// case-sensitive, RFC 9110 9.1).
pub fn parse_http_method(s: &str) -> Result<String, String> {
    if HTTP_METHODS.contains(&s) {
        return Ok(s.to_owned());
    }
    let upper = s.to_ascii_uppercase();
    if HTTP_METHODS.contains(&upper.as_str()) {
        return Err(format!(
            "\"{s}\": HTTP methods are case-sensitive; write \"{upper}\""
        ));
    }
    Err(format!(
        "\"{s}\" is not an HTTP method qosd reads (known: {})",
        HTTP_METHODS.join(", ")
    ))
}

/// Checks the length and characters shared by every HTTP condition text:
/// 1-[`MAX_HTTP_TEXT`] bytes of printable ASCII (spaces only where
/// `spaces`), no space at either end.
fn http_text(s: &str, spaces: bool, what: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("empty {what}: it would match everything"));
    }
    if s.len() > MAX_HTTP_TEXT {
        return Err(format!(
            "{what} \"{s}\" is too long: at most {MAX_HTTP_TEXT} characters"
        ));
    }
    let allowed = |b: u8| (0x21..=0x7e).contains(&b) || (spaces && b == b' ');
    if !s.bytes().all(allowed) {
        let kind = if spaces {
            "printable ASCII"
        } else {
            "printable ASCII without spaces"
        };
        return Err(format!("{what} \"{s}\" must be {kind}"));
    }
    if s.starts_with(' ') || s.ends_with(' ') {
        return Err(format!(
            "{what} \"{s}\" starts or ends with a space (header values are read trimmed)"
        ));
    }
    Ok(())
}

/// An `http_path_suffix`: the end of a request's path (`.m3u8`,
/// `/manifest.mpd`), matched case-insensitively on the path as written,
/// without its query string.
pub fn parse_http_path_suffix(s: &str) -> Result<String, String> {
    http_text(s, false, "path suffix")?;
    if s.contains(['?', '#']) {
        return Err(format!(
            "path suffix \"{s}\" has a '?' or '#': the query string and fragment are not matched, only the path"
        ));
    }
    Ok(s.to_owned())
}

/// An `http_user_agent`: the start of a request's User-Agent
/// (`Microsoft-Delivery-Optimization`), matched case-insensitively.
pub fn parse_http_user_agent(s: &str) -> Result<String, String> {
    http_text(s, true, "user agent")?;
    Ok(s.to_owned())
}

/// An `http_content_type`: the start of a response's media type
/// (`video/`, `application/dash+xml`), matched case-insensitively,
/// parameters left out.
pub fn parse_http_content_type(s: &str) -> Result<String, String> {
    http_text(s, false, "content type")?;
    if s.contains(';') {
        return Err(format!(
            "content type \"{s}\" has parameters: only the media type before ';' is matched"
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_condition_values() {
        assert_eq!(parse_http_method("PROPFIND").unwrap(), "PROPFIND");
        assert!(
            parse_http_method("propfind")
                .unwrap_err()
                .contains("write \"PROPFIND\"")
        );
        assert!(
            parse_http_method("BREW")
                .unwrap_err()
                .contains("known: GET")
        );
        assert_eq!(parse_http_path_suffix(".M3U8").unwrap(), ".M3U8");
        assert!(parse_http_path_suffix("").unwrap_err().contains("empty"));
        assert!(
            parse_http_path_suffix(".ts?x")
                .unwrap_err()
                .contains("query")
        );
        assert!(parse_http_path_suffix("a b").unwrap_err().contains("ASCII"));
        assert!(
            parse_http_path_suffix(".mp4é")
                .unwrap_err()
                .contains("ASCII")
        );
        assert!(
            parse_http_path_suffix(&"a".repeat(65))
                .unwrap_err()
                .contains("too long")
        );
        assert_eq!(
            parse_http_user_agent("Debian APT-HTTP").unwrap(),
            "Debian APT-HTTP"
        );
        assert!(parse_http_user_agent(" apt").unwrap_err().contains("space"));
        assert!(
            parse_http_content_type("video/mp4; codecs=x")
                .unwrap_err()
                .contains("ASCII")
        );
        assert!(
            parse_http_content_type("video/mp4;codecs=x")
                .unwrap_err()
                .contains("parameters")
        );
        assert_eq!(parse_http_content_type("video/").unwrap(), "video/");
    }
}
