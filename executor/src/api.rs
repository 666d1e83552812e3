//! The HTTP edge: parses and validates requests, admits them, hands them to
//! the sandbox, and turns every failure into one JSON error shape with a
//! stable `code`. Knows nothing of wasmtime.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::Executor;
use crate::admission::Rejected;
use crate::limits::LimitRequest;
use crate::sandbox::{Job, Outcome, Status};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The only runtime this executor offers.
pub const PYTHON: &str = "python";
/// Most `args` a request may pass.
const MAX_ARGS: usize = 1024;

/// The request id: the client's `x-request-id` when it is sane, else a uuid.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// Accepts 1–128 characters of `[A-Za-z0-9._:-]`, so ids can be logged and
    /// echoed in headers without escaping.
    pub fn from_headers(headers: &HeaderMap) -> RequestId {
        headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                (1..=128).contains(&v.len())
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
            })
            .map_or_else(
                || RequestId(uuid::Uuid::new_v4().to_string()),
                |v| RequestId(v.to_owned()),
            )
    }
}

/// The one error type of the executor's HTTP API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable; also the `reason` label of `executor_rejected_total`.
    pub code: &'static str,
    /// Safe to show the client.
    pub message: String,
    /// For the log only (host faults).
    pub internal: Option<String>,
    pub retry_after_secs: Option<u64>,
    pub id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            internal: None,
            retry_after_secs: None,
            id: None,
        }
    }

    fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    fn with_id(mut self, id: &RequestId) -> Self {
        self.id = Some(id.0.clone());
        self
    }

    fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn too_large(what: &str, limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("{what} is larger than the limit of {limit} bytes"),
        )
    }

    fn invalid_limits(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_limits", message)
    }

    fn not_ready() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the Python runtime is still loading",
        )
        .retry_after(1)
    }

    fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "this executor is shutting down; retry on another",
        )
        .retry_after(1)
    }
}

impl From<Rejected> for ApiError {
    fn from(r: Rejected) -> Self {
        match r {
            Rejected::QueueFull => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", r.to_string()).retry_after(1)
            }
            Rejected::QueueTimeout => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", r.to_string()).retry_after(2)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(internal) = &self.internal {
            tracing::error!(code = self.code, error = %internal, "request failed");
        } else {
            tracing::debug!(code = self.code, message = %self.message, "request rejected");
        }
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message },
            "id": self.id,
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A validated `POST /execute` body.
#[derive(Debug)]
struct ExecuteRequest {
    code: String,
    stdin: String,
    args: Vec<String>,
    limits: LimitRequest,
}

/// `truncated` in the response.
#[derive(Debug, Serialize)]
pub struct Truncated {
    pub stdout: bool,
    pub stderr: bool,
}

/// `runtime` in the response and in `GET /runtimes`.
#[derive(Debug, Serialize)]
pub struct RuntimeInfo {
    pub name: &'static str,
    pub version: String,
}

/// The `POST /execute` response body.
#[derive(Debug, Serialize)]
pub struct ExecuteResponse {
    pub id: String,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub truncated: Truncated,
    pub duration_ms: f64,
    pub fuel_used: Option<u64>,
    pub runtime: RuntimeInfo,
    pub executor: String,
}

impl ExecuteResponse {
    fn new(id: String, outcome: Outcome, version: &str, executor: &str) -> Self {
        ExecuteResponse {
            id,
            status: outcome.status,
            exit_code: outcome.exit_code,
            stdout: String::from_utf8_lossy(&outcome.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&outcome.stderr).into_owned(),
            truncated: Truncated {
                stdout: outcome.stdout_truncated,
                stderr: outcome.stderr_truncated,
            },
            duration_ms: (outcome.duration.as_secs_f64() * 1e6).round() / 1e3,
            fuel_used: outcome.fuel_used,
            runtime: RuntimeInfo {
                name: PYTHON,
                version: short_version(version),
            },
            executor: executor.to_owned(),
        }
    }
}

/// `3.14.0 (main, …) [Clang …]` → `3.14.0`.
fn short_version(full: &str) -> String {
    full.split_whitespace().next().unwrap_or(full).to_owned()
}

/// The router: `/execute` and `/runtimes` inside the request span and id
/// layer; probes and metrics outside it.
pub fn router(executor: Executor) -> Router {
    let traced = Router::new()
        .route("/execute", post(execute))
        .route("/runtimes", get(runtimes))
        .fallback(not_found)
        .layer(middleware::from_fn(request_span));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(traced)
        .with_state(executor)
}

/// Takes or mints the request id, opens the request's span, echoes the id.
async fn request_span(mut request: Request, next: Next) -> Response {
    let id = RequestId::from_headers(request.headers());
    let span =
        tracing::info_span!("request", id = %id.0, method = %request.method(), path = %request.uri().path());
    request.extensions_mut().insert(id.clone());
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "done"
        );
    });
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

async fn execute(
    State(ex): State<Executor>,
    Extension(id): Extension<RequestId>,
    request: Request,
) -> Response {
    match execute_inner(&ex, &id, request).await {
        Ok(response) => response,
        Err(err) => {
            ex.metrics().rejected(err.code);
            err.with_id(&id).into_response()
        }
    }
}

async fn execute_inner(ex: &Executor, id: &RequestId, request: Request) -> Result<Response, ApiError> {
    if ex.is_draining() {
        return Err(ApiError::shutting_down());
    }
    let req = parse_execute(ex, request).await?;
    let limits = ex
        .limit_policy()
        .resolve(&req.limits)
        .map_err(|e| ApiError::invalid_limits(e.to_string()))?;
    let sandbox = ex.sandbox().ok_or_else(ApiError::not_ready)?;
    let _slot = ex.admission().admit().await?;
    let job = Job {
        code: req.code,
        stdin: req.stdin.into_bytes(),
        args: req.args,
        limits,
    };
    let outcome = sandbox.execute(&job).await.map_err(|e| {
        let mut err = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the executor failed to run the code",
        );
        err.internal = Some(e.to_string());
        err
    })?;
    ex.metrics()
        .execution(outcome.status, outcome.duration, outcome.fuel_used);
    tracing::info!(
        status = outcome.status.as_str(),
        duration_ms = outcome.duration.as_millis() as u64,
        "executed"
    );
    let body = ExecuteResponse::new(id.0.clone(), outcome, sandbox.python_version(), ex.name());
    Ok(Json(body).into_response())
}

/// Reads and validates the body, mapping each kind of bad input to its code.
async fn parse_execute(ex: &Executor, request: Request) -> Result<ExecuteRequest, ApiError> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    let max_body = ex.args().max_body_bytes;
    let bytes = axum::body::to_bytes(request.into_body(), max_body)
        .await
        .map_err(|_| ApiError::too_large("the request body", max_body))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut obj) = value else {
        return Err(ApiError::invalid_request("the body must be a JSON object"));
    };

    let code = match obj.remove("code") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::invalid_request("`code` must be a string")),
        None => return Err(ApiError::invalid_request("`code` is required")),
    };
    let stdin = match obj.remove("stdin") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::invalid_request("`stdin` must be a string")),
    };
    let args = match obj.remove("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(ApiError::invalid_request("`args` must be a list of strings")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(ApiError::invalid_request("`args` must be a list of strings")),
    };
    let runtime = match obj.remove("runtime") {
        None | Some(Value::Null) => PYTHON.to_owned(),
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::invalid_request("`runtime` must be a string")),
    };
    let limits = match obj.remove("limits") {
        None | Some(Value::Null) => LimitRequest::default(),
        Some(Value::Object(map)) => parse_limits(map)?,
        Some(_) => return Err(ApiError::invalid_limits("`limits` must be an object")),
    };
    if let Some(unknown) = obj.keys().next() {
        return Err(ApiError::invalid_request(format!(
            "unknown field `{unknown}`; expected code, stdin, args, runtime, limits"
        )));
    }

    if code.len() > ex.args().max_code_bytes {
        return Err(ApiError::too_large("`code`", ex.args().max_code_bytes));
    }
    if stdin.len() > ex.args().max_stdin_bytes {
        return Err(ApiError::too_large("`stdin`", ex.args().max_stdin_bytes));
    }
    if args.len() > MAX_ARGS {
        return Err(ApiError::invalid_request(format!(
            "at most {MAX_ARGS} `args` are allowed"
        )));
    }
    if runtime != PYTHON {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_runtime",
            format!("unknown runtime `{runtime}`; available: {PYTHON}"),
        ));
    }
    Ok(ExecuteRequest {
        code,
        stdin,
        args,
        limits,
    })
}

fn parse_limits(map: Map<String, Value>) -> Result<LimitRequest, ApiError> {
    let mut limits = LimitRequest::default();
    for (key, value) in map {
        if value.is_null() {
            continue;
        }
        let n = value.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::invalid_limits(format!("limit `{key}` must be a positive integer, got {value}"))
        })?;
        let slot = match key.as_str() {
            "timeout_ms" => &mut limits.timeout_ms,
            "fuel" => &mut limits.fuel,
            "memory_bytes" => &mut limits.memory_bytes,
            "output_bytes" => &mut limits.output_bytes,
            other => {
                return Err(ApiError::invalid_limits(format!(
                    "unknown limit `{other}`; expected timeout_ms, fuel, memory_bytes, output_bytes"
                )));
            }
        };
        *slot = Some(n);
    }
    Ok(limits)
}

async fn runtimes(State(ex): State<Executor>) -> Result<Response, ApiError> {
    let sandbox = ex.sandbox().ok_or_else(ApiError::not_ready)?;
    let policy = ex.limit_policy();
    let limits = |l: crate::limits::Limits| {
        serde_json::json!({
            "timeout_ms": l.timeout.as_millis() as u64,
            "fuel": l.fuel,
            "memory_bytes": l.memory_bytes,
            "output_bytes": l.output_bytes,
        })
    };
    Ok(Json(serde_json::json!({
        "runtimes": [{
            "name": PYTHON,
            "version": short_version(sandbox.python_version()),
            "full_version": sandbox.python_version(),
            "default": true,
            "missing_modules": sandbox.missing_modules(),
        }],
        "limits": { "default": limits(policy.default), "max": limits(policy.max) },
        "executor": ex.name(),
    }))
    .into_response())
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ex): State<Executor>) -> Result<&'static str, ApiError> {
    if ex.is_draining() {
        return Err(ApiError::shutting_down());
    }
    ex.sandbox().map(|_| "ready\n").ok_or_else(ApiError::not_ready)
}

async fn metrics(State(ex): State<Executor>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        Body::from(ex.metrics().render()),
    )
        .into_response()
}

async fn not_found(
    State(ex): State<Executor>,
    Extension(id): Extension<RequestId>,
    request: Request,
) -> ApiError {
    ex.metrics().rejected("not_found");
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
    .with_id(&id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_taken_when_sane_and_minted_otherwise() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123_x.y:z"));
        assert_eq!(RequestId::from_headers(&h).0, "abc-123_x.y:z");
        h.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        let minted = RequestId::from_headers(&h).0;
        assert!(uuid::Uuid::parse_str(&minted).is_ok(), "{minted}");
        assert!(uuid::Uuid::parse_str(&RequestId::from_headers(&HeaderMap::new()).0).is_ok());
    }

    #[test]
    fn limits_must_be_known_positive_integers() {
        let parse = |v: Value| parse_limits(v.as_object().unwrap().clone());
        let ok = parse(serde_json::json!({"fuel": 5, "timeout_ms": null})).unwrap();
        assert_eq!(ok.fuel, Some(5));
        assert_eq!(ok.timeout_ms, None);
        for bad in [
            serde_json::json!({"fuel": 0}),
            serde_json::json!({"fuel": -1}),
            serde_json::json!({"fuel": 1.5}),
            serde_json::json!({"fuel": "9"}),
            serde_json::json!({"cpu": 1}),
        ] {
            assert_eq!(parse(bad.clone()).unwrap_err().code, "invalid_limits", "{bad}");
        }
    }

    #[test]
    fn version_is_shortened() {
        assert_eq!(short_version("3.14.0 (main, Oct 1 2025) [Clang 20]"), "3.14.0");
    }
}
