//! `runbox-baseline`: the `POST /execute` contract (runbox-api's types, parser and error bodies)
//! served by spawning a native `python3 -c` per request, with a wall-clock timeout, output caps
//! and bounded concurrency — a yardstick for runbox, **not a sandbox** (the code runs as this
//! user), so it listens on loopback unless told otherwise.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Extension, Json, Router};
use clap::Parser;
use runbox_api::server::{BodyLimit, JsonBody, layers, not_found, request_id};
use runbox_api::{
    ApiError, DEFAULT_RUNTIME, ErrorCode, ExecuteRequest, ExecuteResponse, LimitHit, LimitKind, LimitPolicy,
    Limits, MAX_ARGS, RuntimeInfo, RuntimeRef, RuntimesResponse, Status, Truncated, headers,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Serves `POST /execute` by running native `python3 -c CODE ARGS…` per request.
#[derive(Debug, Clone, Parser)]
#[command(name = "runbox-baseline", version)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "BASELINE_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Allow a non-loopback address (this server runs any code it is sent, unsandboxed).
    #[arg(long, env = "BASELINE_ALLOW_REMOTE")]
    pub allow_remote: bool,
    /// The Python interpreter to spawn.
    #[arg(long, env = "BASELINE_PYTHON", default_value = "python3")]
    pub python: String,
    /// Reported as `executor` and in `x-runbox-executor`.
    #[arg(long, env = "BASELINE_NAME", default_value = "baseline")]
    pub name: String,
    /// Interpreters running at once (default: CPU count).
    #[arg(long, env = "BASELINE_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Requests that may wait for an interpreter (default: 4 × concurrency); beyond, 429.
    #[arg(long, env = "BASELINE_QUEUE_DEPTH")]
    pub queue_depth: Option<usize>,
    #[arg(long, env = "BASELINE_DEFAULT_TIMEOUT_MS", default_value_t = 5000)]
    pub default_timeout_ms: u64,
    #[arg(long, env = "BASELINE_MAX_TIMEOUT_MS", default_value_t = 30_000)]
    pub max_timeout_ms: u64,
    /// Bytes kept of stdout and of stderr, unless `limits.output_bytes` says otherwise.
    #[arg(long, env = "BASELINE_DEFAULT_OUTPUT_BYTES", default_value_t = 65_536)]
    pub default_output_bytes: u64,
    #[arg(long, env = "BASELINE_MAX_OUTPUT_BYTES", default_value_t = 1_048_576)]
    pub max_output_bytes: u64,
    #[arg(long, env = "BASELINE_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
}

impl Config {
    /// Timeout and output as configured; fuel and memory unlimited (a native interpreter has
    /// neither budget here: requests may name them, and they are accepted and not enforced).
    pub fn policy(&self) -> LimitPolicy {
        let limits = |timeout_ms: u64, output_bytes: u64| Limits {
            timeout: Duration::from_millis(timeout_ms),
            fuel: u64::MAX,
            memory_bytes: u64::MAX,
            output_bytes,
            files: Default::default(),
        };
        LimitPolicy {
            default: limits(self.default_timeout_ms, self.default_output_bytes),
            max: limits(self.max_timeout_ms, self.max_output_bytes),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("{0} is not a loopback address; set BASELINE_ALLOW_REMOTE=true to serve unsandboxed code on it")]
    NotLoopback(SocketAddr),
    #[error("running {python}: {detail}")]
    Python { python: String, detail: String },
}

/// The server's state.
#[derive(Debug)]
pub struct Baseline {
    config: Config,
    policy: LimitPolicy,
    version: String,
    full_version: String,
    slots: Semaphore,
    admitted: AtomicUsize,
    capacity: usize,
}

impl Baseline {
    /// Checks the address and the interpreter (asking it its version).
    pub async fn new(config: Config) -> Result<Baseline, BaselineError> {
        if !config.listen.ip().is_loopback() && !config.allow_remote {
            return Err(BaselineError::NotLoopback(config.listen));
        }
        let python_error = |detail: String| BaselineError::Python {
            python: config.python.clone(),
            detail,
        };
        let script = "import platform, sys\nprint(platform.python_version())\nprint(sys.version.replace(chr(10), ' '))";
        let output = tokio::process::Command::new(&config.python)
            .args(["-c", script])
            .output()
            .await
            .map_err(|e| python_error(e.to_string()))?;
        if !output.status.success() {
            return Err(python_error(String::from_utf8_lossy(&output.stderr).into_owned()));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut lines = stdout.lines().map(str::trim);
        let version = lines.next().unwrap_or_default().to_owned();
        let full_version = lines.next().unwrap_or(&version).to_owned();
        let concurrency = config
            .concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .max(1);
        let queue = config.queue_depth.unwrap_or(4 * concurrency);
        Ok(Baseline {
            policy: config.policy(),
            config,
            version,
            full_version,
            slots: Semaphore::new(concurrency),
            admitted: AtomicUsize::new(0),
            capacity: concurrency + queue,
        })
    }

    pub fn version(&self) -> &str {
        &self.version
    }
}

/// The routes, wrapped in runbox-api's layers: request ids, and a JSON error body for every
/// error (including 404, 405 and 413).
pub fn router(baseline: Arc<Baseline>) -> Router {
    let limit = baseline.config.max_body_bytes;
    let router = Router::new()
        .route("/execute", post(execute))
        .route("/runtimes", get(runtimes))
        .route("/healthz", get(ok))
        .route("/readyz", get(ok))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(Extension(BodyLimit(limit)))
        .with_state(baseline);
    layers(router)
}

/// Serves connections from `listener` until `shutdown` completes, then lets in-flight requests
/// finish.
pub async fn run(
    listener: TcpListener,
    baseline: Arc<Baseline>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(baseline))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn ok() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn runtimes(State(baseline): State<Arc<Baseline>>) -> Json<RuntimesResponse> {
    let limits = baseline.policy.into();
    Json(RuntimesResponse {
        runtimes: vec![RuntimeInfo {
            name: DEFAULT_RUNTIME.into(),
            version: baseline.version.clone(),
            full_version: baseline.full_version.clone(),
            default: true,
            missing_modules: Vec::new(),
            packages: BTreeMap::new(),
            limits,
        }],
        limits,
        executor: baseline.config.name.clone(),
    })
}

/// Releases an admission when dropped.
struct Admission<'a>(&'a AtomicUsize);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn execute(
    State(baseline): State<Arc<Baseline>>,
    request_headers: HeaderMap,
    JsonBody(request): JsonBody<ExecuteRequest>,
) -> Result<Response, ApiError> {
    let cfg = &baseline.config;
    if let Some(runtime) = request.runtime.as_deref().filter(|r| *r != DEFAULT_RUNTIME) {
        return Err(ApiError::new(
            ErrorCode::UnknownRuntime,
            format!("unknown runtime `{runtime}`: this server runs only `{DEFAULT_RUNTIME}`"),
        ));
    }
    if request.files.is_some() || request.entry.is_some() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "`files` and `entry`: this server runs `code` only (no filesystem)",
        ));
    }
    let Some(code) = request.code.as_deref() else {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "`code` is required"));
    };
    let args = request.args.as_deref().unwrap_or_default();
    if args.len() > MAX_ARGS {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("`args`: at most {MAX_ARGS} arguments"),
        ));
    }
    let limits = baseline.policy.resolve(&request.limits.unwrap_or_default());

    if baseline.admitted.fetch_add(1, Ordering::Relaxed) >= baseline.capacity {
        baseline.admitted.fetch_sub(1, Ordering::Relaxed);
        return Err(ApiError::new(
            ErrorCode::Overloaded,
            "all interpreters are busy and the queue is full",
        )
        .retry_after(1));
    }
    let _admission = Admission(&baseline.admitted);
    let Ok(_slot) = baseline.slots.acquire().await else {
        return Err(ApiError::new(ErrorCode::ShuttingDown, "shutting down").retry_after(1));
    };

    let started = Instant::now();
    let stdin = request.stdin.as_deref().unwrap_or_default();
    let run = match spawn_python(cfg, code, args, stdin, &limits).await {
        Ok(run) => run,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            return Err(ApiError::new(ErrorCode::InvalidRequest, e.to_string()));
        }
        Err(e) => return Err(ApiError::internal(format!("spawning {}: {e}", cfg.python))),
    };
    let id = request_id(&request_headers);
    let runtime = RuntimeRef {
        name: DEFAULT_RUNTIME.into(),
        version: baseline.version.clone(),
    };
    let response = respond(run, &limits, id, started.elapsed(), runtime, cfg.name.clone());
    let mut reply = Json(response).into_response();
    if let Ok(name) = HeaderValue::from_str(&cfg.name) {
        reply.headers_mut().insert(headers::EXECUTOR, name);
    }
    Ok(reply)
}

/// One interpreter run.
#[derive(Debug, Default)]
struct PythonRun {
    timed_out: bool,
    exit_code: Option<i32>,
    /// The bytes kept and whether more were dropped.
    stdout: (Vec<u8>, bool),
    stderr: (Vec<u8>, bool),
}

/// The result of a run: `timeout` (and its [`LimitHit`] and stderr note) when the wall clock
/// ended it, else `ok` or `error` by exit code, with an `output` hit when a stream was cut.
fn respond(
    run: PythonRun,
    limits: &Limits,
    id: String,
    elapsed: Duration,
    runtime: RuntimeRef,
    executor: String,
) -> ExecuteResponse {
    let truncated = Truncated {
        stdout: run.stdout.1,
        stderr: run.stderr.1,
        files: false,
    };
    let mut stderr = String::from_utf8_lossy(&run.stderr.0).into_owned();
    let (status, limit) = if run.timed_out {
        let hit = LimitHit::new(LimitKind::Timeout, limits);
        stderr.push_str(&hit.note(Status::Timeout));
        (Status::Timeout, Some(hit))
    } else {
        let status = if run.exit_code == Some(0) {
            Status::Ok
        } else {
            Status::Error
        };
        let cut = truncated.stdout || truncated.stderr;
        (status, cut.then(|| LimitHit::new(LimitKind::Output, limits)))
    };
    ExecuteResponse {
        id,
        status,
        exit_code: if run.timed_out { None } else { run.exit_code },
        stdout: String::from_utf8_lossy(&run.stdout.0).into_owned(),
        stderr,
        truncated,
        files: Vec::new(),
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        fuel_used: None,
        limit,
        runtime,
        executor,
    }
}

/// Reads a pipe to its end, keeping the first `limit` bytes.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>, limit: usize) -> (Vec<u8>, bool) {
    let Some(mut pipe) = pipe else {
        return (Vec::new(), false);
    };
    let (mut kept, mut truncated) = (Vec::new(), false);
    let mut buf = [0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
    (kept, truncated)
}

async fn spawn_python(
    cfg: &Config,
    code: &str,
    args: &[String],
    stdin: &str,
    limits: &Limits,
) -> std::io::Result<PythonRun> {
    let mut cmd = tokio::process::Command::new(&cfg.python);
    cmd.arg("-c")
        .arg(code)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let stdin = stdin.to_owned();
    if let Some(mut pipe) = child.stdin.take() {
        tokio::spawn(async move {
            let _ = pipe.write_all(stdin.as_bytes()).await;
        });
    }
    let limit = usize::try_from(limits.output_bytes).unwrap_or(usize::MAX);
    let stdout = tokio::spawn(read_capped(child.stdout.take(), limit));
    let stderr = tokio::spawn(read_capped(child.stderr.take(), limit));
    let (timed_out, exit_code) = match tokio::time::timeout(limits.timeout, child.wait()).await {
        Ok(status) => (false, status?.code()),
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            (true, None)
        }
    };
    // A grandchild may hold the pipes open: don't wait for it.
    let grace = Duration::from_millis(200);
    let collect = |task: tokio::task::JoinHandle<(Vec<u8>, bool)>| async move {
        tokio::time::timeout(grace, task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    };
    Ok(PythonRun {
        timed_out,
        exit_code,
        stdout: collect(stdout).await,
        stderr: collect(stderr).await,
    })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use runbox_api::{ErrorBody, LimitSet};
    use tower::ServiceExt;

    use super::*;

    fn config(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("runbox-baseline").chain(args.iter().copied())).unwrap()
    }

    async fn baseline(args: &[&str]) -> Arc<Baseline> {
        Arc::new(Baseline::new(config(args)).await.expect("python3 runs"))
    }

    /// One request through the whole router: (status, headers, body).
    async fn send(b: &Arc<Baseline>, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let response = router(Arc::clone(b)).oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
        (parts.status, parts.headers, bytes.to_vec())
    }

    fn post(body: impl Into<String>) -> Request<Body> {
        Request::post("/execute")
            .header("content-type", "application/json")
            .body(Body::from(body.into()))
            .unwrap()
    }

    async fn execute(b: &Arc<Baseline>, request: &ExecuteRequest) -> ExecuteResponse {
        let (status, _, body) = send(b, post(serde_json::to_string(request).unwrap())).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    async fn error(b: &Arc<Baseline>, request: Request<Body>) -> (u16, ErrorBody) {
        let (status, headers, body) = send(b, request).await;
        assert_eq!(headers["content-type"], "application/json", "{status}");
        (
            status.as_u16(),
            serde_json::from_slice(&body).expect("an error body"),
        )
    }

    fn limits(timeout_ms: u64, output_bytes: u64) -> Limits {
        Limits {
            timeout: Duration::from_millis(timeout_ms),
            fuel: u64::MAX,
            memory_bytes: u64::MAX,
            output_bytes,
            files: Default::default(),
        }
    }

    #[tokio::test]
    async fn remote_addresses_need_consent() {
        assert!(matches!(
            Baseline::new(config(&["--listen", "0.0.0.0:0"])).await,
            Err(BaselineError::NotLoopback(_))
        ));
    }

    #[tokio::test]
    async fn pipes_are_read_up_to_the_cap() {
        let data: &[u8] = b"0123456789";
        assert_eq!(read_capped(Some(data), 4).await, (b"0123".to_vec(), true));
        assert_eq!(read_capped(Some(data), 10).await, (data.to_vec(), false));
        assert_eq!(read_capped(None::<&[u8]>, 10).await, (Vec::new(), false));
    }

    #[test]
    fn requests_are_clamped_by_the_configured_policy() {
        let policy = config(&["--default-timeout-ms", "100", "--max-timeout-ms", "200"]).policy();
        let asked = |json: &str| policy.resolve(&serde_json::from_str(json).unwrap());
        assert_eq!(asked("{}").timeout, Duration::from_millis(100));
        assert_eq!(
            asked(r#"{"timeout_ms": 199}"#).timeout,
            Duration::from_millis(199)
        );
        assert_eq!(
            asked(r#"{"timeout_ms": 201}"#).timeout,
            Duration::from_millis(200)
        );
        assert_eq!(asked(r#"{"output_bytes": 10}"#).output_bytes, 10);
        assert_eq!(asked("{}").fuel, u64::MAX, "no fuel budget, and none enforced");
        assert_eq!(asked("{}").memory_bytes, u64::MAX);
    }

    #[test]
    fn results_name_the_limit_that_ended_or_cut_the_run() {
        let runtime = || RuntimeRef {
            name: "python".into(),
            version: "3".into(),
        };
        let l = limits(300, 4);
        let r = |run: PythonRun| {
            respond(
                run,
                &l,
                "id".into(),
                Duration::from_millis(2),
                runtime(),
                "b".into(),
            )
        };

        let ok = r(PythonRun {
            exit_code: Some(0),
            stdout: (b"hi\n".to_vec(), false),
            ..PythonRun::default()
        });
        assert_eq!(
            (ok.status, ok.exit_code, ok.limit.as_ref()),
            (Status::Ok, Some(0), None)
        );
        assert_eq!((ok.stdout.as_str(), ok.duration_ms), ("hi\n", 2.0));

        let failed = r(PythonRun {
            exit_code: Some(3),
            ..PythonRun::default()
        });
        assert_eq!((failed.status, failed.exit_code), (Status::Error, Some(3)));

        let timed_out = r(PythonRun {
            timed_out: true,
            stderr: (b"partial".to_vec(), true),
            ..PythonRun::default()
        });
        let hit = timed_out.limit.clone().expect("a limit");
        assert_eq!((timed_out.status, timed_out.exit_code), (Status::Timeout, None));
        assert_eq!(
            (hit.kind, hit.value, hit.unit.as_str()),
            (LimitKind::Timeout, 300, "ms")
        );
        assert_eq!(
            timed_out.stderr,
            format!("partial{}", hit.note(Status::Timeout)),
            "the wall clock, not the cut stderr, is what ended it"
        );

        let cut = r(PythonRun {
            exit_code: Some(0),
            stdout: (b"xxxx".to_vec(), true),
            ..PythonRun::default()
        });
        let hit = cut.limit.expect("a limit");
        assert_eq!(
            (cut.status, hit.kind, hit.value),
            (Status::Ok, LimitKind::Output, 4)
        );
        assert!(cut.truncated.stdout && !cut.truncated.stderr);
    }

    #[tokio::test]
    async fn runs_answer_with_the_typed_result() {
        let b = baseline(&["--name", "native-1"]).await;
        let mut request = ExecuteRequest::code("import sys\nprint(sys.argv[1:], input())");
        request.stdin = Some("x\n".into());
        request.args = Some(vec!["-v".into()]);
        let mut req = post(serde_json::to_string(&request).unwrap());
        req.headers_mut()
            .insert(headers::REQUEST_ID, HeaderValue::from_static("load-1"));
        let (status, headers, body) = send(&b, req).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(headers[headers::EXECUTOR], "native-1");
        assert_eq!(headers[headers::REQUEST_ID], "load-1");
        let r: ExecuteResponse = serde_json::from_slice(&body).unwrap();
        assert_eq!((r.status, r.exit_code), (Status::Ok, Some(0)));
        assert_eq!(r.stdout, "['-v'] x\n");
        assert_eq!((r.id.as_str(), r.executor.as_str()), ("load-1", "native-1"));
        assert_eq!(
            (r.runtime.name.as_str(), r.runtime.version.as_str()),
            ("python", b.version())
        );
        assert_eq!(r.limit, None);

        let r = execute(&b, &ExecuteRequest::code("import sys\nsys.exit(3)")).await;
        assert_eq!((r.status, r.exit_code), (Status::Error, Some(3)));
    }

    #[tokio::test]
    async fn a_timeout_and_a_flood_carry_their_limit() {
        let b = baseline(&[]).await;
        let mut sleep = ExecuteRequest::code("import time\ntime.sleep(30)");
        sleep.limits = Some(serde_json::from_str(r#"{"timeout_ms": 200}"#).unwrap());
        let r = execute(&b, &sleep).await;
        let hit = r.limit.clone().expect("the timeout is named");
        assert_eq!((r.status, r.exit_code), (Status::Timeout, None));
        assert_eq!((hit.kind, hit.value), (LimitKind::Timeout, 200));
        assert!(r.stderr.ends_with(&hit.note(Status::Timeout)), "{}", r.stderr);
        assert!(r.duration_ms >= 200.0, "{}", r.duration_ms);

        let mut flood = ExecuteRequest::code("print('x' * 100_000)");
        flood.limits = Some(serde_json::from_str(r#"{"output_bytes": 1024}"#).unwrap());
        let r = execute(&b, &flood).await;
        assert_eq!(
            (r.status, r.stdout.len(), r.truncated.stdout),
            (Status::Ok, 1024, true)
        );
        assert_eq!(
            r.limit.map(|l| (l.kind, l.value)),
            Some((LimitKind::Output, 1024))
        );
    }

    #[tokio::test]
    async fn bad_requests_get_the_contracts_error_codes() {
        let b = baseline(&["--max-body-bytes", "256"]).await;
        let args = serde_json::to_string(&vec!["a"; MAX_ARGS + 1]).unwrap();
        let cases = [
            ("{", 400, ErrorCode::InvalidJson),
            (r#"{"stdin": "x"}"#, 400, ErrorCode::InvalidRequest),
            (r#"{"code": "1", "cod": 1}"#, 400, ErrorCode::InvalidRequest),
            (
                r#"{"code": "1", "limits": {"fuel": 0}}"#,
                422,
                ErrorCode::InvalidLimits,
            ),
            (
                r#"{"code": "1", "limits": {"cpu": 1}}"#,
                422,
                ErrorCode::InvalidLimits,
            ),
            (
                r#"{"code": "1", "runtime": "ruby"}"#,
                422,
                ErrorCode::UnknownRuntime,
            ),
            ("{\"code\": \"\\u0000\"}", 400, ErrorCode::InvalidRequest),
        ];
        for (body, status, code) in cases {
            let (got, e) = error(&b, post(body)).await;
            assert_eq!((got, e.error.code), (status, code), "{body}: {e:?}");
            assert!(e.id.is_some_and(|id| !id.is_empty()), "{body}");
        }
        // Too many args is refused before any interpreter runs (the body limit would refuse it
        // too, so the check runs with a larger one).
        let roomy = baseline(&[]).await;
        let (got, e) = error(&roomy, post(format!(r#"{{"code": "1", "args": {args}}}"#))).await;
        assert_eq!((got, e.error.code), (400, ErrorCode::InvalidRequest), "{e:?}");

        let (got, e) = error(&b, post(format!(r#"{{"code": "{}"}}"#, "x".repeat(300)))).await;
        assert_eq!((got, e.error.code), (413, ErrorCode::PayloadTooLarge));
        assert!(e.error.message.contains("256 bytes"), "{}", e.error.message);
        let plain = Request::post("/execute")
            .header("content-type", "text/plain")
            .body(Body::from("{}"))
            .unwrap();
        let untyped = Request::post("/execute").body(Body::from("{}")).unwrap();
        for request in [plain, untyped] {
            let (got, e) = error(&b, request).await;
            assert_eq!((got, e.error.code), (415, ErrorCode::UnsupportedMediaType));
        }
        let (got, e) = error(&b, Request::get("/nope").body(Body::empty()).unwrap()).await;
        assert_eq!((got, e.error.code), (404, ErrorCode::NotFound));
        let (got, e) = error(&b, Request::get("/execute").body(Body::empty()).unwrap()).await;
        assert_eq!((got, e.error.code), (405, ErrorCode::MethodNotAllowed));
    }

    #[tokio::test]
    async fn a_full_queue_is_429_overloaded_with_retry_after() {
        let b = baseline(&["--concurrency", "1", "--queue-depth", "0"]).await;
        // The first request holds the only interpreter until its 2 s timeout.
        let mut sleepy = ExecuteRequest::code("import time\ntime.sleep(30)");
        sleepy.limits = Some(serde_json::from_str(r#"{"timeout_ms": 2000}"#).unwrap());
        let first = tokio::spawn({
            let b = Arc::clone(&b);
            async move { execute(&b, &sleepy).await }
        });
        testkit::poll_until(
            "the first request is admitted",
            Duration::from_secs(10),
            || std::future::ready(b.admitted.load(Ordering::Relaxed)),
            |n| *n == 1,
        )
        .await;
        let (status, headers, body) = send(&b, post(r#"{"code": "print(1)"}"#)).await;
        let e: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!((status.as_u16(), e.error.code), (429, ErrorCode::Overloaded));
        assert_eq!(headers["retry-after"], "1");
        assert_eq!(first.await.unwrap().status, Status::Timeout);
        assert_eq!(b.admitted.load(Ordering::Relaxed), 0, "admissions are released");
    }

    #[tokio::test]
    async fn runtimes_lists_python_with_its_limits() {
        let b = baseline(&["--default-timeout-ms", "1000", "--max-output-bytes", "2048"]).await;
        let (status, _, body) = send(&b, Request::get("/runtimes").body(Body::empty()).unwrap()).await;
        assert_eq!(status, 200);
        let r: RuntimesResponse = serde_json::from_slice(&body).unwrap();
        assert_eq!(r.executor, "baseline");
        let python = &r.runtimes[0];
        assert_eq!((python.name.as_str(), python.default), ("python", true));
        assert_eq!(python.version, b.version());
        let LimitSet { default, max } = r.limits;
        assert_eq!((default.timeout_ms, max.output_bytes), (1000, 2048));
        assert_eq!(python.limits, r.limits);
    }
}
