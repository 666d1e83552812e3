//! The playground's static files (`frontend/dist/`, built by `cargo xtask`),
//! embedded with `rust-embed`: in a release build the bytes are in the
//! binary; a debug build reads the folder at run time. `/` is `index.html`.
//! Without a built playground, `/` explains how to get one.

use std::borrow::Cow;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../frontend/dist"]
#[allow_missing = true]
struct Playground;

/// `/` when the playground was not built into this gateway.
pub const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>runbox</title>\
<h1>runbox</h1><p>The playground was not built into this gateway. Run <code>cargo xtask run</code>, \
which builds it, or use the API: <code>POST /execute</code>.</p>";

/// The playground file at `path`, or `None` (then the route is a 404).
pub fn serve(path: &str) -> Option<Response> {
    serve_from::<Playground>(path)
}

fn serve_from<E: RustEmbed>(path: &str) -> Option<Response> {
    let file = if path == "/" {
        "index.html"
    } else {
        path.strip_prefix('/')?
    };
    let escapes = file.starts_with('/') || file.contains('\\') || file.split('/').any(|s| s == "..");
    if file.is_empty() || escapes {
        return None;
    }
    match E::get(file) {
        Some(embedded) => Some(file_response(file, embedded.data)),
        None if path == "/" => {
            Some(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], NOT_BUILT).into_response())
        }
        None => None,
    }
}

fn file_response(file: &str, data: Cow<'static, [u8]>) -> Response {
    let mime = mime_guess::from_path(file).first_or_octet_stream();
    let content_type = if mime.type_() == mime_guess::mime::TEXT {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_str(&content_type)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            ),
            // Fixed file names: revalidate so index.html never meets a stale app.js.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        Body::from(data),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in playground: `tests/fixtures/playground/`.
    #[derive(RustEmbed)]
    #[folder = "tests/fixtures/playground"]
    struct Fixture;

    /// A playground that was never built: the folder does not exist.
    #[derive(RustEmbed)]
    #[folder = "tests/fixtures/not-built"]
    #[allow_missing = true]
    struct NotBuilt;

    async fn text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_root_is_index_html_with_the_caching_headers() {
        let r = serve_from::<Fixture>("/").unwrap();
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(r.headers()["cache-control"], "no-cache");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert!(text(r).await.contains("fixture playground"));
        let js = serve_from::<Fixture>("/app.js").unwrap();
        assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");
        let css = serve_from::<Fixture>("/app.css").unwrap();
        assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    }

    #[tokio::test]
    async fn missing_files_and_escapes_are_not_served() {
        assert!(serve_from::<Fixture>("/nope.js").is_none());
        assert!(serve_from::<Fixture>("/../Cargo.toml").is_none());
        assert!(serve_from::<Fixture>("/x/../app.js").is_none());
        assert!(serve_from::<Fixture>("//etc/passwd").is_none());
        assert!(serve_from::<Fixture>("").is_none());
    }

    #[tokio::test]
    async fn without_a_build_the_root_explains_and_nothing_else_is_served() {
        let r = serve_from::<NotBuilt>("/").unwrap();
        assert_eq!(text(r).await, NOT_BUILT);
        assert!(serve_from::<NotBuilt>("/app.js").is_none());
    }
}
