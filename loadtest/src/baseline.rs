//! `runbox-baseline`: the `POST /execute` contract (subset) served by spawning a native
//! `python3 -c` per request, with a wall-clock timeout, output caps and bounded concurrency — a
//! yardstick for runbox, **not a sandbox** (the code runs as this user), so it listens on
//! loopback unless told otherwise.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::client::EXECUTOR_HEADER;

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
    version: String,
    slots: Semaphore,
    admitted: AtomicUsize,
    capacity: usize,
    next_id: AtomicU64,
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
        let output = tokio::process::Command::new(&config.python)
            .args(["-c", "import platform; print(platform.python_version())"])
            .output()
            .await
            .map_err(|e| python_error(e.to_string()))?;
        if !output.status.success() {
            return Err(python_error(String::from_utf8_lossy(&output.stderr).into_owned()));
        }
        let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let concurrency = config
            .concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .max(1);
        let queue = config.queue_depth.unwrap_or(4 * concurrency);
        Ok(Baseline {
            config,
            version,
            slots: Semaphore::new(concurrency),
            admitted: AtomicUsize::new(0),
            capacity: concurrency + queue,
            next_id: AtomicU64::new(1),
        })
    }

    pub fn version(&self) -> &str {
        &self.version
    }
}

/// Serves connections from `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    baseline: Arc<Baseline>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    eprintln!("runbox-baseline: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let baseline = Arc::clone(&baseline);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let baseline = Arc::clone(&baseline);
                async move { Ok::<_, Infallible>(handle(&baseline, req).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(code: StatusCode, body: &Value) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(code: StatusCode, api_code: &str, message: &str) -> Reply {
    let mut r = reply(
        code,
        &json!({ "error": { "code": api_code, "message": message }, "id": null }),
    );
    if matches!(
        code,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

async fn handle(baseline: &Baseline, req: Request<Incoming>) -> Reply {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/execute") => execute(baseline, req).await,
        (&Method::GET, "/healthz" | "/readyz") => reply(StatusCode::OK, &json!({ "status": "ok" })),
        (&Method::GET, "/runtimes") => reply(
            StatusCode::OK,
            &json!({
                "executor": baseline.config.name,
                "runtimes": [{ "name": "python", "version": baseline.version, "default": true }],
                "limits": { "enforced": ["timeout_ms", "output_bytes"] },
            }),
        ),
        (_, "/execute" | "/healthz" | "/readyz" | "/runtimes") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        ),
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    }
}

/// The request body; like the executor, unknown fields are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecRequest {
    code: String,
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    runtime: Option<String>,
    #[serde(default)]
    limits: Option<serde_json::Map<String, Value>>,
}

/// Releases an admission when dropped.
struct Admission<'a>(&'a AtomicUsize);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn execute(baseline: &Baseline, req: Request<Incoming>) -> Reply {
    let cfg = &baseline.config;
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE)
        && !ct.to_str().is_ok_and(|s| s.contains("json"))
    {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        );
    }
    let body = match Limited::new(req.into_body(), cfg.max_body_bytes).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is too large",
            );
        }
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_json", &e.to_string()),
    };
    let request: ExecRequest = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
    };
    if request.runtime.as_deref().is_some_and(|r| r != "python") {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_runtime",
            "only `python` is served",
        );
    }
    let (mut timeout_ms, mut output_bytes) = (cfg.default_timeout_ms, cfg.default_output_bytes);
    for (key, value) in request.limits.iter().flatten() {
        let Some(n) = value.as_u64().filter(|n| *n > 0) else {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_limits",
                &format!("`{key}` must be a positive integer"),
            );
        };
        match key.as_str() {
            "timeout_ms" => timeout_ms = n.min(cfg.max_timeout_ms),
            "output_bytes" => output_bytes = n.min(cfg.max_output_bytes),
            // Accepted for compatibility; a native interpreter has no fuel or memory limit here.
            "fuel" | "memory_bytes" => {}
            _ => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_limits",
                    &format!("unknown limit `{key}`"),
                );
            }
        }
    }

    if baseline.admitted.fetch_add(1, Ordering::Relaxed) >= baseline.capacity {
        baseline.admitted.fetch_sub(1, Ordering::Relaxed);
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            "all interpreters busy and the queue is full",
        );
    }
    let _admission = Admission(&baseline.admitted);
    let Ok(_slot) = baseline.slots.acquire().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "shutting down");
    };

    let id = format!("baseline-{}", baseline.next_id.fetch_add(1, Ordering::Relaxed));
    let started = Instant::now();
    let run = match spawn_python(cfg, &request, timeout_ms, output_bytes).await {
        Ok(run) => run,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            return error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string());
        }
        Err(e) => {
            eprintln!("runbox-baseline: spawning {}: {e}", cfg.python);
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "could not start the interpreter",
            );
        }
    };
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = match (run.timed_out, run.exit_code) {
        (true, _) => "timeout",
        (false, Some(0)) => "ok",
        _ => "error",
    };
    let mut stderr = String::from_utf8_lossy(&run.stderr.0).into_owned();
    if run.timed_out {
        stderr.push_str(&format!(
            "[baseline] timeout: the run exceeded its wall-clock limit of {timeout_ms} ms\n"
        ));
    }
    let mut response = reply(
        StatusCode::OK,
        &json!({
            "id": id,
            "status": status,
            "exit_code": if run.timed_out { None } else { run.exit_code },
            "stdout": String::from_utf8_lossy(&run.stdout.0),
            "stderr": stderr,
            "truncated": { "stdout": run.stdout.1, "stderr": run.stderr.1 },
            "duration_ms": duration_ms,
            "fuel_used": null,
            "runtime": { "name": "python", "version": baseline.version },
            "executor": cfg.name,
        }),
    );
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&cfg.name) {
        headers.insert(EXECUTOR_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert("x-request-id", v);
    }
    response
}

/// One interpreter run.
struct PythonRun {
    timed_out: bool,
    exit_code: Option<i32>,
    /// The bytes kept and whether more were dropped.
    stdout: (Vec<u8>, bool),
    stderr: (Vec<u8>, bool),
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
    request: &ExecRequest,
    timeout_ms: u64,
    output_bytes: u64,
) -> std::io::Result<PythonRun> {
    let mut cmd = tokio::process::Command::new(&cfg.python);
    cmd.arg("-c")
        .arg(&request.code)
        .args(&request.args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let stdin = request.stdin.clone().unwrap_or_default();
    if let Some(mut pipe) = child.stdin.take() {
        tokio::spawn(async move {
            let _ = pipe.write_all(stdin.as_bytes()).await;
        });
    }
    let limit = usize::try_from(output_bytes).unwrap_or(usize::MAX);
    let stdout = tokio::spawn(read_capped(child.stdout.take(), limit));
    let stderr = tokio::spawn(read_capped(child.stderr.take(), limit));
    let (timed_out, exit_code) =
        match tokio::time::timeout(Duration::from_millis(timeout_ms), child.wait()).await {
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
    use super::*;

    #[tokio::test]
    async fn remote_addresses_need_consent() {
        let config = Config::try_parse_from(["runbox-baseline", "--listen", "0.0.0.0:0"]).unwrap();
        assert!(matches!(
            Baseline::new(config).await,
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
}
