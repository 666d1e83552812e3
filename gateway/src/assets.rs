//! The playground's static files, embedded at build time (see `build.rs`).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>runbox</title>\
<h1>runbox</h1><p>The playground was not built into this gateway. Run <code>cargo xtask run</code>, \
which builds it, or use the API: <code>POST /execute</code>.</p>";

/// The embedded file for `path` (`/` is `/index.html`).
pub fn lookup(path: &str) -> Option<(&'static str, &'static [u8])> {
    let path = if path == "/" { "/index.html" } else { path };
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, mime, bytes)| (*mime, *bytes))
}

pub async fn serve(uri: Uri) -> Response {
    match lookup(uri.path()) {
        Some((mime, bytes)) => {
            // Fixed file names: revalidate so index.html never meets a stale app.js.
            let cache = "no-cache";
            (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
                    (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
                    (
                        header::X_CONTENT_TYPE_OPTIONS,
                        HeaderValue::from_static("nosniff"),
                    ),
                ],
                Body::from(bytes),
            )
                .into_response()
        }
        None if uri.path() == "/" && !PLAYGROUND_BUILT => {
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], NOT_BUILT).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
