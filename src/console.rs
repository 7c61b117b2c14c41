//! The web console: a page served by qosd itself on the admin API's
//! listener (`GET /`), hand-written HTML, CSS and ES modules from `web/`
//! embedded in the binary. The page only reads and writes through the
//! admin API, so it has no powers of its own: writes need the same bearer
//! token, which the browser keeps in `sessionStorage` and sends only in the
//! `Authorization` header.
//!
//! Every response here carries a strict Content-Security-Policy and the
//! other security headers ([`SECURITY_HEADERS`]): the page runs no inline
//! script or style, talks to its own origin only, and cannot be framed.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One file of the console, embedded at build time.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The path it is served at.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

/// An [`Asset`] from a file of `web/`.
macro_rules! asset {
    ($path:literal, $content_type:literal, $file:literal) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("../web/", $file)),
        }
    };
}

/// The console's files. No build step: what is in `web/` is what is served.
pub const ASSETS: [Asset; 5] = [
    asset!("/", "text/html; charset=utf-8", "index.html"),
    asset!(
        "/console.js",
        "text/javascript; charset=utf-8",
        "console.js"
    ),
    asset!("/plot.js", "text/javascript; charset=utf-8", "plot.js"),
    asset!("/console.css", "text/css; charset=utf-8", "console.css"),
    asset!("/favicon.svg", "image/svg+xml", "favicon.svg"),
];

/// The Content-Security-Policy of every console response: scripts, styles
/// and connections to this origin only (no inline script or style
/// attribute is needed), images from here or `data:`, never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The headers on every console response.
pub const SECURITY_HEADERS: [(&str, &str); 6] = [
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    // For browsers that predate frame-ancestors.
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

/// A strong validator per asset (FNV-1a of its bytes), so that a browser
/// on a slow link revalidates with a 304 instead of downloading again.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let hash = a.body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
            HeaderValue::from_str(&format!("\"{hash:016x}\""))
                .unwrap_or(HeaderValue::from_static("\"0\""))
        })
        .collect()
});

/// Routes serving the console; the admin API merges them into its own, so
/// the console is wherever the API is. Generic over the router's state
/// (the console needs none), which keeps this module free of `api`.
pub fn console_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS
        .iter()
        .enumerate()
        .fold(Router::new(), |router, (i, asset)| {
            router.route(
                asset.path,
                get(move |headers: HeaderMap| async move { serve(i, &headers) }),
            )
        })
}

/// The asset at `i` (or a 304 when the browser's copy is current), with
/// the security headers.
fn serve(i: usize, request: &HeaderMap) -> Response {
    let (Some(asset), Some(etag)) = (ASSETS.get(i), ETAGS.get(i)) else {
        return with_security_headers(StatusCode::NOT_FOUND.into_response());
    };
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag.clone());
    // Always revalidate: a new qosd must not run yesterday's script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_security_headers(resp)
}

fn with_security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget is 200 KB compressed for the whole page; with no
    /// compressor in the dependency tree, hold the raw bytes to half of
    /// that, which is stricter.
    #[test]
    fn the_page_stays_well_under_the_size_budget() {
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        assert!(total <= 100 * 1024, "console assets are {total} bytes");
    }

    #[test]
    fn every_asset_has_a_distinct_path_and_etag() {
        for (i, a) in ASSETS.iter().enumerate() {
            for b in ASSETS.iter().skip(i + 1) {
                assert_ne!(a.path, b.path);
            }
        }
        let tags: std::collections::HashSet<&[u8]> =
            ETAGS.iter().map(HeaderValue::as_bytes).collect();
        assert_eq!(tags.len(), ASSETS.len());
    }
}
