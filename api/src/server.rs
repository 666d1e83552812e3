//! What both HTTP servers share on top of the contract: [`ApiError`] as a
//! response, the typed JSON body extractor, the request-id and trace layers,
//! a JSON body for every error response, tracing set-up and signals; and
//! the HTTP edge: the connection loop with its timeouts and caps
//! ([`serve`], `edge.rs`), the body buffer with its deadline and memory
//! budget ([`buffer_body`], `buffer.rs`), and their flags ([`edge_args!`](crate::edge_args)).

mod args;
mod buffer;
mod edge;

pub use buffer::{BodyBuffer, Charge, ClientAddr, Holding, buffer_body};
pub use edge::{Edge, EdgeConfig, EdgeSnapshot, MAX_HEADER_BYTES, MAX_HEADERS, client_key, serve};

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::{ApiError, ErrorCode};
use crate::headers::{REQUEST_ID, is_sane_request_id};

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(internal) = &self.internal {
            tracing::error!(code = %self.code, error = %internal, "request failed");
        } else {
            tracing::debug!(code = %self.code, message = %self.message, "request rejected");
        }
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(Rendered(self));
        response
    }
}

/// Marks a response whose body an [`ApiError`] rendered, so
/// [`json_errors`] can add the request id without parsing it.
#[derive(Debug, Clone)]
struct Rendered(ApiError);

/// The error code of a response an [`ApiError`] rendered (for metrics).
pub fn error_code(response: &Response) -> Option<ErrorCode> {
    response.extensions().get::<Rendered>().map(|r| r.0.code)
}

/// The request id of the request being served (set by [`layers`]).
pub fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A JSON request body parsed into `T`: the content type must be JSON, the
/// body within the router's `DefaultBodyLimit`, and any failure is an
/// [`ApiError`] naming the failing field path: `invalid_json` for a syntax
/// error, `invalid_limits` for anything under `limits`, `invalid_request`
/// otherwise.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

/// The body limit a router enforces, for the 413 message (an extension the
/// server adds beside `DefaultBodyLimit`).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json(request.headers())?;
        let bytes = read_body(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A request body as bytes, unparsed (for a server that passes it on, as the
/// gateway does): within the router's `DefaultBodyLimit`, and over it the 413
/// `payload_too_large` that [`JsonBody`] gives, naming the [`BodyLimit`].
#[derive(Debug, Clone)]
pub struct BodyBytes(pub Bytes);

impl<S> FromRequest<S> for BodyBytes
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_body(request, state).await.map(BodyBytes)
    }
}

/// Reads the body within `DefaultBodyLimit`; over it, 413 naming the [`BodyLimit`].
async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    let limit = request.extensions().get::<BodyLimit>().copied();
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            match limit {
                Some(BodyLimit(n)) => ApiError::too_large("the request body", n),
                None => ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large"),
            }
        } else {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("reading the body failed: {rejection}"),
            )
        }
    })
}

/// Parses `bytes` as `T`, mapping failures as [`JsonBody`] does.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    use serde_json::error::Category;
    let invalid_json = |e: &serde_json::Error| {
        ApiError::new(ErrorCode::InvalidJson, format!("the body is not valid JSON: {e}"))
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de);
    if value.is_ok() {
        de.end().map_err(|e| invalid_json(&e))?;
    }
    value.map_err(|e| {
        let inner = e.inner();
        if !matches!(inner.classify(), Category::Data) {
            return invalid_json(inner);
        }
        let path = e.path().to_string();
        let under_limits = matches!(
            e.path().iter().next(),
            Some(serde_path_to_error::Segment::Map { key }) if key == "limits"
        );
        let code = if under_limits {
            ErrorCode::InvalidLimits
        } else {
            ErrorCode::InvalidRequest
        };
        let message = if path == "." {
            inner.to_string()
        } else {
            format!("`{path}`: {inner}")
        };
        ApiError::new(code, message)
    })
}

/// 415 `unsupported_media_type` unless the request says its body is JSON.
pub fn require_json(headers: &http::HeaderMap) -> Result<(), ApiError> {
    if is_json(headers.get(header::CONTENT_TYPE)) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "the body must be JSON (Content-Type: application/json)",
        ))
    }
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

/// The router wrapped in the layers every server has, outermost first: an
/// insane client `x-request-id` is dropped, a missing one minted
/// (tower-http `SetRequestId`), the id echoed on the response
/// (`PropagateRequestId`), and every error response given the JSON error
/// body with the id ([`json_errors`]).
pub fn layers(router: Router) -> Router {
    router
        .layer(middleware::from_fn(json_errors))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(middleware::map_request(drop_insane_request_id))
}

/// The layer [`trace_layer`] returns.
pub type RequestTrace = TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    fn(&Request) -> tracing::Span,
    (),
    fn(&Response, Duration, &tracing::Span),
>;

/// The request span for the API routes: `request{id, method, path}` with one
/// log line per response (probes and metrics stay out of it).
pub fn trace_layer() -> RequestTrace {
    fn span(request: &Request) -> tracing::Span {
        let id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        tracing::info_span!("request", id = %id, method = %request.method(), path = %request.uri().path())
    }
    fn done(response: &Response, latency: Duration, _span: &tracing::Span) {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = latency.as_millis() as u64,
            "done"
        );
    }
    TraceLayer::new_for_http()
        .make_span_with(span as fn(&Request) -> tracing::Span)
        .on_request(())
        .on_response(done as fn(&Response, Duration, &tracing::Span))
}

async fn drop_insane_request_id(mut request: Request) -> Request {
    let insane = request
        .headers()
        .get(REQUEST_ID)
        .is_some_and(|v| !is_sane_request_id(v.as_bytes()));
    if insane {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

/// Every error response leaves as the JSON error body with the request id:
/// an [`ApiError`] gets its id filled in, and a bare status from a layer or
/// the router (405, 413, 408…) gets the body of its code.
pub async fn json_errors(request: Request, next: Next) -> Response {
    // The header value is a cheap clone; the id string is made only for an error.
    let id_header = request.headers().get(REQUEST_ID).cloned();
    let response = next.run(request).await;
    let status = response.status();
    let id = || {
        id_header
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if let Some(Rendered(error)) = response.extensions().get::<Rendered>() {
        if error.id.is_some() {
            return response;
        }
        let id = id();
        if id.is_empty() {
            return response;
        }
        let error = error.clone().with_id(id);
        let mut fresh = error.into_response();
        // Keep what the handler or a layer added (Allow, CORS, …).
        for (name, value) in response.headers() {
            if name != header::CONTENT_LENGTH && !fresh.headers().contains_key(name) {
                fresh.headers_mut().insert(name.clone(), value.clone());
            }
        }
        return fresh;
    }
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let code = ErrorCode::for_status(status);
    let message = status.canonical_reason().unwrap_or("error").to_lowercase();
    let mut error = ApiError::new(code, message).with_status(status);
    let id = id();
    if !id.is_empty() {
        error = error.with_id(id);
    }
    let (parts, _) = response.into_parts();
    let mut fresh = error.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            fresh.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fresh
}

/// `GET /openapi.json`: the generated document (runtime names left open;
/// see [`openapi_for`]).
pub async fn openapi() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOC.get_or_init(crate::openapi::document_json).clone();
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// A `GET /openapi.json` route for a server that runs exactly `runtimes`.
pub fn openapi_for<S: Clone + Send + Sync + 'static>(runtimes: &[String]) -> axum::routing::MethodRouter<S> {
    let text = Bytes::from(crate::openapi::document_json_for(runtimes));
    axum::routing::get(move || {
        let text = text.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], text).into_response() }
    })
}

/// The fallback of both routers: 404 `not_found` naming the route.
pub async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
}

/// Serves the API (`api` on its listener, under `edge`) and `/metrics` (on
/// a listener of its own, under default edge limits) until `shutdown`; the
/// API then drains for at most `drain`, and the metrics listener stops with
/// it.
pub async fn serve_with_metrics(
    api: (tokio::net::TcpListener, Router, Edge),
    metrics: (tokio::net::TcpListener, Router),
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let (listener, router) = metrics;
    let metrics = tokio::spawn(serve(
        listener,
        router,
        Edge::new(EdgeConfig::default()),
        std::future::pending(),
        Duration::ZERO,
    ));
    let (listener, router, edge) = api;
    let result = serve(listener, router, edge, shutdown, drain).await;
    metrics.abort();
    result
}

/// The edge's series in the Prometheus text format, named `<prefix>_…`.
pub fn render_edge(prefix: &str, s: &EdgeSnapshot) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut series = |name: &str, kind: &str, help: &str, values: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {prefix}_{name} {help}");
        let _ = writeln!(out, "# TYPE {prefix}_{name} {kind}");
        for (labels, value) in values {
            let _ = writeln!(out, "{prefix}_{name}{labels} {value}");
        }
    };
    series(
        "connections_open",
        "gauge",
        "Client connections open now.",
        &[("", s.open as f64)],
    );
    series(
        "connections_refused_total",
        "counter",
        "Connections closed at accept, by the cap that was reached.",
        &[
            ("{reason=\"server\"}", s.refused_full as f64),
            ("{reason=\"client\"}", s.refused_client as f64),
        ],
    );
    series(
        "connections_closed_total",
        "counter",
        "Connections the server closed, by reason (idle: no request within the idle timeout; header_timeout: a request head did not arrive in time; write_timeout: the client read nothing in time).",
        &[
            ("{reason=\"idle\"}", s.closed_idle as f64),
            ("{reason=\"header_timeout\"}", s.closed_header_timeout as f64),
            ("{reason=\"write_timeout\"}", s.closed_write_timeout as f64),
        ],
    );
    series(
        "body_timeouts_total",
        "counter",
        "Requests answered 408: the body did not arrive within the body timeout.",
        &[("", s.body_timeouts as f64)],
    );
    series(
        "buffer_refusals_total",
        "counter",
        "Requests answered 503: the memory budget for bodies was spent.",
        &[("", s.budget_refusals as f64)],
    );
    series(
        "buffered_bytes",
        "gauge",
        "Request and response body bytes held in memory now.",
        &[("", s.buffered_bytes as f64)],
    );
    out
}

/// Installs the tracing subscriber (text or JSON lines; filter from `RUST_LOG`).
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::post;
    use tower::ServiceExt;

    use super::*;
    use crate::{ErrorBody, ExecuteRequest};

    fn app() -> Router {
        let router = Router::new()
            .route(
                "/execute",
                post(|JsonBody(r): JsonBody<ExecuteRequest>| async move { r.code.unwrap_or_default() }),
            )
            .fallback(not_found)
            .layer(axum::extract::DefaultBodyLimit::max(64))
            .layer(axum::Extension(BodyLimit(64)));
        layers(router)
    }

    async fn send(request: Request) -> (StatusCode, http::HeaderMap, Vec<u8>) {
        let response = app().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (parts.status, parts.headers, bytes.to_vec())
    }

    fn post_json(body: &str) -> Request {
        Request::post("/execute")
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    }

    async fn error(request: Request) -> (StatusCode, ErrorBody) {
        let (status, headers, body) = send(request).await;
        assert_eq!(headers["content-type"], "application/json", "{status}");
        (status, serde_json::from_slice(&body).expect("an error body"))
    }

    #[tokio::test]
    async fn bad_bodies_get_their_stable_code_and_the_failing_path() {
        let cases = [
            ("{", 400, ErrorCode::InvalidJson, ""),
            (r#"{"code": "a"} x"#, 400, ErrorCode::InvalidJson, "trailing"),
            ("[1]", 400, ErrorCode::InvalidRequest, ""),
            (r#"{"files": {}}"#, 400, ErrorCode::InvalidRequest, "`files`"),
            (
                r#"{"files": [{"path": "a"}]}"#,
                400,
                ErrorCode::InvalidRequest,
                "`files[0]`",
            ),
            (r#"{"code": 1}"#, 400, ErrorCode::InvalidRequest, "`code`"),
            (
                r#"{"code": "", "args": [1]}"#,
                400,
                ErrorCode::InvalidRequest,
                "`args[0]`",
            ),
            (
                r#"{"code": "", "extra": 1}"#,
                400,
                ErrorCode::InvalidRequest,
                "extra",
            ),
            (
                r#"{"code": "", "limits": {"fuel": 0}}"#,
                422,
                ErrorCode::InvalidLimits,
                "`limits.fuel`",
            ),
            (
                r#"{"code": "", "limits": {"cpu": 1}}"#,
                422,
                ErrorCode::InvalidLimits,
                "cpu",
            ),
            (
                r#"{"code": "", "limits": 5}"#,
                422,
                ErrorCode::InvalidLimits,
                "`limits`",
            ),
        ];
        for (body, status, code, needle) in cases {
            let (got, e) = error(post_json(body)).await;
            assert_eq!((got.as_u16(), e.error.code), (status, code), "{body}: {e:?}");
            assert!(e.error.message.contains(needle), "{body}: {}", e.error.message);
            assert!(e.id.is_some_and(|id| !id.is_empty()), "{body}");
        }
    }

    #[tokio::test]
    async fn the_body_limit_is_enforced_just_over_it_and_not_at_it() {
        let at = format!(r#"{{"code": "{}"}}"#, "x".repeat(64 - 12));
        assert_eq!(at.len(), 64);
        let (status, _, body) = send(post_json(&at)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let over = format!(r#"{{"code": "{}"}}"#, "x".repeat(64 - 11));
        let (status, e) = error(post_json(&over)).await;
        assert_eq!((status.as_u16(), e.error.code), (413, ErrorCode::PayloadTooLarge));
        assert!(e.error.message.contains("64 bytes"), "{}", e.error.message);
    }

    #[tokio::test]
    async fn raw_bodies_are_limited_with_the_same_413() {
        let router = Router::new()
            .route(
                "/raw",
                post(|BodyBytes(b): BodyBytes| async move { b.len().to_string() }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(8))
            .layer(axum::Extension(BodyLimit(8)));
        let app = layers(router);
        let raw = |n: usize| Request::post("/raw").body(Body::from(vec![b'x'; n])).unwrap();
        let response = app.clone().oneshot(raw(8)).await.unwrap();
        assert_eq!(response.status(), 200, "no content type needed, at the limit");
        let response = app.oneshot(raw(9)).await.unwrap();
        assert_eq!(response.status(), 413);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let e: ErrorBody = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(e.error.code, ErrorCode::PayloadTooLarge);
        assert!(e.error.message.contains("8 bytes"), "{}", e.error.message);
    }

    #[tokio::test]
    async fn media_type_route_and_method_errors_are_json() {
        let plain = Request::post("/execute")
            .header("content-type", "text/plain")
            .body(Body::from("{}"))
            .unwrap();
        assert_eq!(error(plain).await.1.error.code, ErrorCode::UnsupportedMediaType);
        let (status, e) = error(Request::get("/nope").body(Body::empty()).unwrap()).await;
        assert_eq!((status.as_u16(), e.error.code), (404, ErrorCode::NotFound));
        let (status, e) = error(Request::get("/execute").body(Body::empty()).unwrap()).await;
        assert_eq!(
            (status.as_u16(), e.error.code),
            (405, ErrorCode::MethodNotAllowed)
        );
    }

    #[tokio::test]
    async fn sane_request_ids_are_kept_and_others_replaced() {
        let mut r = post_json(r#"{"code": "x"}"#);
        r.headers_mut()
            .insert(REQUEST_ID, HeaderValue::from_static("abc-1"));
        let (_, headers, _) = send(r).await;
        assert_eq!(headers[REQUEST_ID], "abc-1");
        let mut r = post_json("{");
        r.headers_mut()
            .insert(REQUEST_ID, HeaderValue::from_static("has space"));
        let (_, headers, body) = send(r).await;
        let minted = headers[REQUEST_ID].to_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&minted).is_ok(), "{minted}");
        let e: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            e.id.as_deref(),
            Some(minted.as_str()),
            "the body carries the same id"
        );
    }
}
