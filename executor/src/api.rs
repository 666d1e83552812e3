//! The HTTP edge: reads the body whole (deadline, limit, memory budget:
//! `runbox_api::server::buffer_body`), parses it by type under a parse
//! permit, picks the runtime, admits the job, hands it to the runtime, and
//! answers with the typed response. Every failure is a
//! `runbox_api::ApiError` (one JSON shape, a stable `code`, counted in
//! `executor_rejected_total`). Knows nothing of wasmtime. `/metrics` is
//! served by [`metrics_router`], on a listener of its own.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use runbox_api::files::{DEFAULT_ENTRY, normalise_path};
use runbox_api::server::{self, BodyBuffer, BodyBytes, BodyLimit, Edge};
use runbox_api::{
    ApiError, ErrorCode, ExecuteRequest, ExecuteResponse, InputFile, LimitSet, MAX_ARGS, RuntimeRef,
    RuntimesResponse, Truncated,
};

use crate::Executor;
use crate::admission::Rejected;
use crate::runtimes::Runtime;
use crate::sandbox::{Files, Job, Outcome, SandboxError};

impl From<Rejected> for ApiError {
    fn from(r: Rejected) -> Self {
        match r {
            Rejected::QueueFull => ApiError::new(ErrorCode::Overloaded, r.to_string()).retry_after(1),
            Rejected::QueueTimeout => ApiError::new(ErrorCode::Overloaded, r.to_string())
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .retry_after(2),
        }
    }
}

fn not_ready() -> ApiError {
    ApiError::new(ErrorCode::NotReady, "the runtimes are still loading").retry_after(1)
}

fn shutting_down() -> ApiError {
    ApiError::new(
        ErrorCode::ShuttingDown,
        "this executor is shutting down; retry on another",
    )
    .retry_after(1)
}

/// The router: `/execute` and `/runtimes` inside the request span, the body
/// buffer of `edge` (a server's own listener; `None` when the caller has
/// buffered the body already, as the embedded gateway has) and the body
/// limit; probes and the document outside them; request ids, JSON errors and
/// the rejection count around everything.
pub fn router(executor: Executor, edge: Option<&Edge>) -> Router {
    let max_body = executor.args().max_body_bytes;
    let mut api = Router::new()
        .route("/execute", post(execute))
        .route("/runtimes", get(runtimes))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(Extension(BodyLimit(max_body)));
    if let Some(edge) = edge {
        api = api.layer(middleware::from_fn_with_state(
            BodyBuffer::new(edge, max_body),
            server::buffer_body,
        ));
    }
    let api = api.layer(server::trace_layer());
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", server::openapi_for(&executor.args().runtimes))
        .merge(api)
        .fallback(server::not_found)
        .with_state(executor.clone());
    server::layers(router).layer(middleware::from_fn_with_state(executor, count_rejections))
}

/// `GET /metrics` (the executor's series, and `edge`'s when given), for the
/// metrics listener.
pub fn metrics_router(executor: Executor, edge: Option<Edge>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move |State(ex): State<Executor>| {
                let edge = edge.clone();
                async move { metrics(&ex, edge.as_ref()) }
            }),
        )
        .fallback(server::not_found)
        .with_state(executor)
}

/// Counts every error answer but the probes' by its code.
async fn count_rejections(State(ex): State<Executor>, request: Request, next: Next) -> Response {
    let probe = matches!(request.uri().path(), "/healthz" | "/readyz");
    let response = next.run(request).await;
    if let Some(code) = server::error_code(&response)
        && !probe
    {
        ex.metrics().rejected(code);
    }
    response
}

async fn execute(
    State(ex): State<Executor>,
    headers: HeaderMap,
    body: Result<BodyBytes, ApiError>,
) -> Result<Json<ExecuteResponse>, ApiError> {
    if ex.is_draining() {
        return Err(shutting_down());
    }
    let BodyBytes(body) = body?;
    server::require_json(&headers)?;
    // At most `concurrency` bodies are parsed at once, before admission.
    let req: ExecuteRequest = {
        let _permit = ex.parse_permit().await;
        server::parse_json(&body)?
    };
    drop(body);
    let id = server::request_id(&headers);
    let args = ex.args();
    if req.code.as_ref().is_some_and(|c| c.len() > args.max_code_bytes) {
        return Err(ApiError::too_large("`code`", args.max_code_bytes));
    }
    let stdin = req.stdin.unwrap_or_default();
    if stdin.len() > args.max_stdin_bytes {
        return Err(ApiError::too_large("`stdin`", args.max_stdin_bytes));
    }
    let argv = req.args.unwrap_or_default();
    if argv.len() > MAX_ARGS {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("at most {MAX_ARGS} `args` are allowed"),
        ));
    }
    let runtime = pick_runtime(&ex, req.runtime.as_deref())?;
    let described = runtime.describe();
    let (entry, files) = program(req.code, req.files.unwrap_or_default(), req.entry)?;
    let job = Job {
        files,
        entry,
        stdin: stdin.into_bytes(),
        args: argv,
        limits: described.policy.resolve(&req.limits.unwrap_or_default()),
    };
    let _slot = ex.admission().admit().await?;
    let outcome = runtime.execute(&job).await.map_err(|e| match e {
        SandboxError::InputFiles { .. } => ApiError::new(ErrorCode::PayloadTooLarge, e.to_string())
            .with_status(StatusCode::PAYLOAD_TOO_LARGE),
        e => ApiError::internal(e.to_string()),
    })?;
    ex.metrics().execution(
        described.name,
        outcome.status,
        outcome.duration,
        outcome.fuel_used,
    );
    tracing::info!(
        runtime = described.name,
        status = outcome.status.as_str(),
        duration_ms = outcome.duration.as_millis() as u64,
        "executed"
    );
    Ok(Json(response(id, outcome, runtime.as_ref(), ex.name())))
}

/// The program a request describes: the entry's path, and every file of
/// the working directory (the entry among them) with normalised paths.
/// `code`, when given, is the entry's content; without it the entry must be
/// among `files`. A bad, duplicate or missing path is a 400
/// `invalid_request` naming it.
fn program(
    code: Option<String>,
    files: Vec<InputFile>,
    entry: Option<String>,
) -> Result<(String, Files), ApiError> {
    let invalid = |m: String| ApiError::new(ErrorCode::InvalidRequest, m);
    let normal = |what: &str, path: &str| {
        normalise_path(path).map_err(|why| invalid(format!("{what} `{}` {why}", path.escape_debug())))
    };
    let entry = match entry {
        Some(e) => normal("`entry`", &e)?,
        None => DEFAULT_ENTRY.to_owned(),
    };
    let mut out: Files = Vec::with_capacity(files.len() + 1);
    let mut seen = std::collections::HashSet::new();
    let has_code = code.is_some();
    if let Some(code) = code {
        seen.insert(entry.clone());
        out.push((entry.clone(), code.into_bytes()));
    }
    for file in files {
        let path = normal("file path", &file.path)?;
        if !seen.insert(path.clone()) {
            return Err(invalid(if has_code && path == entry {
                format!("file `{path}` is the entry, whose content `code` already gives")
            } else {
                format!("file `{path}` is given twice")
            }));
        }
        let bytes = file.bytes().map_err(invalid)?;
        out.push((path, bytes));
    }
    // A directory and a file of the same path cannot both exist.
    for (path, _) in &out {
        let mut prefix = path.as_str();
        while let Some((dir, _)) = prefix.rsplit_once('/') {
            if seen.contains(dir) {
                return Err(invalid(format!("file `{dir}` is also a directory of `{path}`")));
            }
            prefix = dir;
        }
    }
    match out.iter().find(|(p, _)| *p == entry) {
        None if !has_code && out.is_empty() => Err(invalid("`code` or `files` is required".to_owned())),
        None => Err(invalid(format!("the entry `{entry}` is not among `files`"))),
        Some((_, content)) if std::str::from_utf8(content).is_err() => {
            Err(invalid(format!("the entry `{entry}` is not UTF-8 text")))
        }
        Some(_) => Ok((entry, out)),
    }
}

/// The runtime a request names (the default when it names none): 422
/// `unknown_runtime` for a name this executor is not configured with, 503
/// `not_ready` while the configured ones load.
fn pick_runtime<'a>(
    ex: &'a Executor,
    name: Option<&str>,
) -> Result<&'a std::sync::Arc<dyn Runtime>, ApiError> {
    let configured = &ex.args().runtimes;
    if let Some(name) = name
        && !configured.iter().any(|c| c == name)
    {
        return Err(ApiError::new(
            ErrorCode::UnknownRuntime,
            format!("unknown runtime `{name}`; available: {}", configured.join(", ")),
        ));
    }
    let registry = ex.registry().ok_or_else(not_ready)?;
    registry.get(name).ok_or_else(not_ready)
}

fn response(id: String, outcome: Outcome, runtime: &dyn Runtime, executor: &str) -> ExecuteResponse {
    let described = runtime.describe();
    ExecuteResponse {
        id,
        status: outcome.status,
        exit_code: outcome.exit_code,
        stdout: String::from_utf8_lossy(&outcome.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&outcome.stderr).into_owned(),
        truncated: Truncated {
            stdout: outcome.stdout_truncated,
            stderr: outcome.stderr_truncated,
            files: outcome.files_truncated,
        },
        files: outcome.files,
        duration_ms: (outcome.duration.as_secs_f64() * 1e6).round() / 1e3,
        fuel_used: outcome.fuel_used,
        limit: outcome.limit,
        runtime: RuntimeRef {
            name: described.name.to_owned(),
            version: described.version.clone(),
        },
        executor: executor.to_owned(),
    }
}

async fn runtimes(State(ex): State<Executor>) -> Result<Json<RuntimesResponse>, ApiError> {
    let registry = ex.registry().ok_or_else(not_ready)?;
    Ok(Json(RuntimesResponse {
        runtimes: registry.infos(),
        limits: LimitSet::from(registry.default_runtime().describe().policy),
        executor: ex.name().to_owned(),
    }))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ex): State<Executor>) -> Result<&'static str, ApiError> {
    if ex.is_draining() {
        return Err(shutting_down());
    }
    ex.registry().map(|_| "ready\n").ok_or_else(not_ready)
}

fn metrics(ex: &Executor, edge: Option<&Edge>) -> Response {
    let mut text = ex.metrics().render();
    if let Some(edge) = edge {
        text.push_str(&server::render_edge("executor", &edge.snapshot()));
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        Body::from(text),
    )
        .into_response()
}
