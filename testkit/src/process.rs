//! Workspace binaries as child processes on 127.0.0.1: started with an ephemeral port, their
//! address read from their log, their output kept for failure messages, killed on drop.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use runbox_api::{ExecuteRequest, ExecuteResponse};
use serde::Serialize;

use crate::binary::{Bin, cache_dir, guest_wasm, scientific_dir};
use crate::http::{self, PROBE_TIMEOUT, Reply};
use crate::metrics::Metrics;
use crate::poll::{poll_until, try_poll_until};

/// Longest a process may take to log its address.
pub const ADDRESS_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest [`Proc::wait_ready`] waits (an executor without a warm AOT cache compiles the guest
/// first, slowly on a busy 2-core machine).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Lines of output kept per process for failure messages.
const LOG_LINES: usize = 200;

/// How to start a binary: its environment on top of the test's own, then [`Spawn::start`].
#[derive(Debug, Clone)]
pub struct Spawn {
    bin: Bin,
    program: PathBuf,
    env: Vec<(OsString, Option<OsString>)>,
    args: Vec<OsString>,
}

/// An executor named `name` (`EXECUTOR_NAME`) on `127.0.0.1:0`, logging JSON, with the guest
/// and AOT cache of [`guest_wasm`] and [`cache_dir`] (`EXECUTOR_NO_CACHE=true` without one).
pub fn executor(name: &str) -> Spawn {
    Spawn::new(Bin::Executor)
        .with_runtime_env()
        .env("EXECUTOR_NAME", name)
        .env("EXECUTOR_LOG_FORMAT", "json")
}

/// A gateway on `127.0.0.1:0`, logging JSON, probing static executors every 100 ms; embedded
/// mode (no `GATEWAY_EXECUTORS`) gets the executor's guest and cache settings.
pub fn gateway() -> Spawn {
    Spawn::new(Bin::Gateway)
        .with_runtime_env()
        .env("GATEWAY_LOG_FORMAT", "json")
        .env("GATEWAY_PROBE_INTERVAL_MS", "100")
}

/// `runbox-baseline` on `127.0.0.1:0`. Without `BASELINE_PYTHON` in the environment it runs
/// the interpreter `python3` resolves to (`sys.executable`), so a version manager's shim does
/// not add a shell script to every request.
pub fn baseline() -> Spawn {
    let spawn = Spawn::new(Bin::Baseline);
    if std::env::var_os("BASELINE_PYTHON").is_some() {
        return spawn;
    }
    spawn.env("BASELINE_PYTHON", real_python3().unwrap_or(OsStr::new("python3")))
}

/// The interpreter behind `python3` (`sys.executable`, resolving a version
/// manager's shim, which would otherwise add a shell script to every spawn);
/// `None` when `python3` does not run.
pub fn real_python3() -> Option<&'static OsStr> {
    static PYTHON: OnceLock<Option<OsString>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .filter(|p| !p.is_empty())
                .map(OsString::from)
        })
        .as_deref()
}

impl Spawn {
    /// `bin` with `RUST_LOG=info`, no `RUST_BACKTRACE`, and its listen variable (if it is a
    /// server) set to `127.0.0.1:0`.
    pub fn new(bin: Bin) -> Spawn {
        let mut spawn = Spawn {
            bin,
            program: bin.path(),
            env: Vec::new(),
            args: Vec::new(),
        }
        .env("RUST_LOG", "info")
        .env_remove("RUST_BACKTRACE");
        if let Some(var) = bin.listen_var() {
            spawn = spawn.env(var, "127.0.0.1:0");
        }
        if let Some(var) = bin.metrics_listen_var() {
            spawn = spawn.env(var, "127.0.0.1:0");
        }
        spawn
    }

    /// The guests and the AOT cache; only the `python` runtime unless a
    /// test asks for more (`.env("EXECUTOR_RUNTIMES", …)` after this): the
    /// second costs every process ~1.5 s and ~250 MB of mapped artifact.
    fn with_runtime_env(self) -> Spawn {
        let spawn = self
            .env("EXECUTOR_GUEST_WASM", guest_wasm())
            .env("EXECUTOR_SCIENTIFIC_DIR", scientific_dir())
            .env("EXECUTOR_RUNTIMES", "python");
        match cache_dir() {
            Some(dir) => spawn.env("EXECUTOR_CACHE_DIR", dir),
            None => spawn.env("EXECUTOR_NO_CACHE", "true"),
        }
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Spawn {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn envs(mut self, vars: &[(&str, &str)]) -> Spawn {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Spawn {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Spawn {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Listens on `addr` instead of `127.0.0.1:0` (e.g. to restart on a port just freed).
    pub fn listen(self, addr: impl ToString) -> Spawn {
        let var = self
            .bin
            .listen_var()
            .unwrap_or_else(|| panic!("{} is not a server", self.bin.name()));
        self.env(var, addr.to_string())
    }

    /// A gateway over these executors (`GATEWAY_EXECUTORS`, static discovery).
    pub fn executors(self, executors: &[&Proc]) -> Spawn {
        let urls: Vec<String> = executors.iter().map(|e| e.base()).collect();
        self.env("GATEWAY_EXECUTORS", urls.join(","))
    }

    /// Starts the process and waits until it logs its address (a JSON line with `fields.addr`),
    /// not until it is ready (see [`Proc::wait_ready`]). Panics with the process's output if it
    /// exits or stays silent for [`ADDRESS_TIMEOUT`].
    #[track_caller]
    pub fn start(self) -> impl Future<Output = Proc> {
        let caller = std::panic::Location::caller();
        async move {
            match self.try_start().await {
                Ok(p) => p,
                Err(e) => panic!("{caller}: {e}"),
            }
        }
    }

    /// [`Spawn::start`], then [`Proc::wait_ready`].
    #[track_caller]
    pub fn ready(self) -> impl Future<Output = Proc> {
        let caller = std::panic::Location::caller();
        let start = self.start();
        async move {
            let p = start.await;
            p.wait_ready_at(READY_TIMEOUT, caller).await;
            p
        }
    }

    /// [`Spawn::start`] that hands back why it did not start (for tests of a process that must
    /// refuse to: a bad configuration, a guest that does not load).
    pub async fn try_start(self) -> Result<Proc, StartError> {
        let name = self.bin.name();
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.program.display()));
        let log = Log::default();
        let (eof_tx, eof_rx) = mpsc::channel();
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        read_lines(stdout, log.clone(), "", Some(addr_tx), eof_tx.clone());
        read_lines(stderr, log.clone(), "stderr| ", None, eof_tx);
        let mut proc = Proc {
            bin: self.bin,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: None,
            log,
            eof: Mutex::new(Some(eof_rx)),
            http: http::client(),
        };
        let (reason, status) = match tokio::time::timeout(ADDRESS_TIMEOUT, addr_rx).await {
            Ok(Ok((addr, metrics_addr))) => {
                proc.addr = addr;
                proc.metrics_addr = metrics_addr;
                return Ok(proc);
            }
            Ok(Err(_)) => {
                // Its stdout closed: it is exiting (or closed it, and is killed after a while).
                let exited = try_poll_until(
                    Duration::from_secs(10),
                    || std::future::ready(proc.try_exit()),
                    Option::is_some,
                )
                .await;
                let status = exited.ok().flatten();
                if status.is_none() {
                    proc.kill();
                }
                ("closed its output without logging its address".to_owned(), status)
            }
            Err(_) => {
                proc.kill();
                (format!("logged no address within {ADDRESS_TIMEOUT:?}"), None)
            }
        };
        proc.drain_output();
        Err(StartError {
            bin: name,
            reason,
            status,
            output: proc.logs(),
        })
    }
}

/// Why [`Spawn::try_start`] got no address.
#[derive(Debug, Clone)]
pub struct StartError {
    pub bin: &'static str,
    pub reason: String,
    /// How it exited (`None`: it was still running and was killed).
    pub status: Option<ExitStatus>,
    /// Its stdout and stderr (the last lines).
    pub output: String,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.status.map_or_else(|| "killed".to_owned(), |s| s.to_string());
        write!(
            f,
            "{} {} ({status}); its output:\n{}",
            self.bin, self.reason, self.output
        )
    }
}

impl std::error::Error for StartError {}

/// The last lines a process wrote, stdout and stderr interleaved as read, and how many of the
/// two streams have reached EOF.
#[derive(Debug, Clone, Default)]
struct Log {
    lines: Arc<Mutex<VecDeque<String>>>,
    closed: Arc<AtomicUsize>,
}

impl Log {
    fn push(&self, line: String) {
        let mut lines = self.lines.lock().expect("log lock");
        if lines.len() == LOG_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn tail(&self) -> String {
        let lines = self.lines.lock().expect("log lock");
        let mut out = String::new();
        for l in lines.iter() {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// Both streams closed: the process has exited (or closed them, which ours never do).
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) == 2
    }
}

/// Reads `pipe` line by line into `log` on a thread until EOF (always draining it, so the
/// child never blocks on a full pipe); sends the first `fields.addr` it sees.
fn read_lines(
    pipe: impl Read + Send + 'static,
    log: Log,
    prefix: &'static str,
    mut addr: Option<tokio::sync::oneshot::Sender<(SocketAddr, Option<SocketAddr>)>>,
    eof: mpsc::Sender<()>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if addr.is_some()
                && let Some(found) = address_in(&line)
                && let Some(tx) = addr.take()
            {
                let _ = tx.send(found);
            }
            log.push(format!("{prefix}{line}"));
        }
        log.closed.fetch_add(1, Ordering::AcqRel);
        let _ = eof.send(());
    });
}

/// The listening address in a JSON log line, and the metrics listener's when the same line
/// has one: `{"fields": {"addr": "127.0.0.1:1234", "metrics_addr": "127.0.0.1:1235", …}, …}`.
fn address_in(line: &str) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let parse = |key: &str| -> Option<SocketAddr> {
        let addr = v["fields"][key].as_str()?;
        addr.strip_prefix("http://").unwrap_or(addr).parse().ok()
    };
    Some((parse("addr")?, parse("metrics_addr")))
}

/// A running binary; killed (SIGKILL) and reaped on drop. When the test is panicking, the drop
/// prints the process's last output.
#[derive(Debug)]
pub struct Proc {
    bin: Bin,
    child: Child,
    addr: SocketAddr,
    /// Where `/metrics` is served: a listener of its own (executor, gateway), else `addr`.
    metrics_addr: Option<SocketAddr>,
    log: Log,
    /// One message per output stream at its EOF.
    eof: Mutex<Option<mpsc::Receiver<()>>>,
    http: reqwest::Client,
}

impl Proc {
    pub fn bin(&self) -> Bin {
        self.bin
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where `/metrics` is served: the metrics listener's address (executor, gateway), else
    /// [`Proc::addr`].
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr.unwrap_or(self.addr)
    }

    /// `http://{metrics_addr}/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr())
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The client the helpers below use (no proxy, bounded calls); clone it for concurrent
    /// requests.
    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// Its last lines of stdout and stderr.
    pub fn logs(&self) -> String {
        self.log.tail()
    }

    /// Waits until `GET /readyz` answers 200, for at most [`READY_TIMEOUT`].
    #[track_caller]
    pub fn wait_ready(&self) -> impl Future<Output = ()> + '_ {
        self.wait_ready_within(READY_TIMEOUT)
    }

    /// Waits until `GET /readyz` answers 200, for at most `within`; panics with the process's
    /// output when it does not (or exits meanwhile).
    #[track_caller]
    pub fn wait_ready_within(&self, within: Duration) -> impl Future<Output = ()> + '_ {
        self.wait_ready_at(within, std::panic::Location::caller())
    }

    async fn wait_ready_at(&self, within: Duration, caller: &'static std::panic::Location<'static>) {
        let url = self.url("/readyz");
        let probe = || async {
            let status = match self.http.get(&url).timeout(PROBE_TIMEOUT).send().await {
                Ok(r) => Some(r.status().as_u16()),
                Err(_) => None,
            };
            (status, self.log.closed())
        };
        let done = |(status, gone): &(Option<u16>, bool)| *status == Some(200) || *gone;
        match try_poll_until(within, probe, done).await {
            Ok((Some(200), _)) => {}
            Ok(_) => panic!(
                "{caller}: {} at {} exited before it was ready; its output:\n{}",
                self.bin.name(),
                self.addr,
                self.logs()
            ),
            Err((last, _)) => panic!(
                "{caller}: {} at {} not ready within {within:?} (last /readyz: {last:?}); its output:\n{}",
                self.bin.name(),
                self.addr,
                self.logs()
            ),
        }
    }

    /// Polls `GET path` until it answers `status` (e.g. `/readyz` → 503 once draining), for at
    /// most `within`; `None` (no answer, e.g. the listener closed) counts as not yet.
    #[track_caller]
    pub fn wait_status<'a>(
        &'a self,
        path: &str,
        status: u16,
        within: Duration,
    ) -> impl Future<Output = ()> + 'a {
        let url = self.url(path);
        let what = format!("GET {url} answers {status}");
        let probe = move || {
            let url = url.clone();
            async move {
                let r = self.http.get(&url).timeout(PROBE_TIMEOUT).send().await.ok()?;
                Some(r.status().as_u16())
            }
        };
        let wait = poll_until(what, within, probe, move |s| *s == Some(status));
        async move {
            wait.await;
        }
    }

    /// Sends SIGTERM (the graceful stop).
    pub fn terminate(&self) {
        send_signal(self.pid(), "TERM");
    }

    /// Sends SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its exit status, if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for it to exit, for at most `within` (then panics with its output); afterwards
    /// [`Proc::logs`] holds everything it wrote.
    #[track_caller]
    pub fn wait_exit(&mut self, within: Duration) -> impl Future<Output = ExitStatus> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            let exited =
                try_poll_until(within, || std::future::ready(self.try_exit()), Option::is_some).await;
            let Ok(Some(status)) = exited else {
                panic!(
                    "{caller}: {} at {} still running after {within:?}; its output:\n{}",
                    self.bin.name(),
                    self.addr,
                    self.logs()
                );
            };
            self.drain_output();
            status
        }
    }

    /// After exit: waits (briefly) until both output streams reached EOF.
    fn drain_output(&self) {
        let Some(eof) = self.eof.lock().expect("eof lock").take() else {
            return;
        };
        for _ in 0..2 {
            if eof.recv_timeout(Duration::from_secs(2)).is_err() {
                break;
            }
        }
    }

    /// `GET path`; panics (with the process's output) when there is no answer.
    #[track_caller]
    pub fn get<'a>(&'a self, path: &str) -> impl Future<Output = Reply> + 'a {
        let caller = std::panic::Location::caller();
        let url = self.url(path);
        async move {
            let result = http::get(&self.http, &url).await;
            self.answered(caller, &url, result)
        }
    }

    /// `POST path` with a JSON body; panics when there is no answer.
    #[track_caller]
    pub fn post_json<'a>(&'a self, path: &str, body: &'a impl Serialize) -> impl Future<Output = Reply> + 'a {
        let caller = std::panic::Location::caller();
        let url = self.url(path);
        async move {
            let result = http::post_json(&self.http, &url, body).await;
            self.answered(caller, &url, result)
        }
    }

    /// `POST path` with a raw body and content type; panics when there is no answer.
    #[track_caller]
    pub fn post_raw<'a>(
        &'a self,
        path: &str,
        content_type: &'a str,
        body: impl Into<reqwest::Body> + 'a,
    ) -> impl Future<Output = Reply> + 'a {
        let caller = std::panic::Location::caller();
        let url = self.url(path);
        async move {
            let result = http::post_raw(&self.http, &url, content_type, body).await;
            self.answered(caller, &url, result)
        }
    }

    /// `POST /execute`; panics when there is no answer.
    #[track_caller]
    pub fn execute<'a>(&'a self, request: &'a ExecuteRequest) -> impl Future<Output = Reply> + 'a {
        self.post_json("/execute", request)
    }

    /// Runs `code` with everything else defaulted and returns the result (asserting 200).
    #[track_caller]
    pub fn run<'a>(&'a self, code: &str) -> impl Future<Output = ExecuteResponse> + 'a {
        let caller = std::panic::Location::caller();
        let url = self.url("/execute");
        let request = ExecuteRequest::code(code);
        async move {
            let result = http::post_json(&self.http, &url, &request).await;
            let reply = self.answered(caller, &url, result);
            assert_eq!(reply.status, 200, "{caller}: {}", reply.text());
            reply.json()
        }
    }

    /// `GET /metrics` on the metrics listener, parsed.
    #[track_caller]
    pub fn metrics(&self) -> impl Future<Output = Metrics> + '_ {
        let caller = std::panic::Location::caller();
        let url = self.metrics_url();
        async move {
            let result = http::get(&self.http, &url).await;
            let reply = self.answered(caller, &url, result);
            assert_eq!(reply.status, 200, "{url}: {}", reply.text());
            Metrics::parse(&reply.text())
        }
    }

    /// One series from `GET /metrics` (see [`Metrics::value`]).
    #[track_caller]
    pub fn metric<'a>(&'a self, series: &'a str) -> impl Future<Output = Option<f64>> + 'a {
        let metrics = self.metrics();
        async move { metrics.await.value(series) }
    }

    /// Polls `series` on `/metrics` until `done` holds, for at most `within`; returns the value
    /// that satisfied it, panics with the last one otherwise. A scrape that fails counts as
    /// `None`.
    #[track_caller]
    pub fn wait_metric<'a>(
        &'a self,
        series: &'a str,
        within: Duration,
        done: impl Fn(Option<f64>) -> bool + 'a,
    ) -> impl Future<Output = Option<f64>> + 'a {
        let url = self.metrics_url();
        let what = format!("{series} on {url}");
        let probe = move || {
            let url = url.clone();
            async move {
                let reply = self.http.get(&url).timeout(PROBE_TIMEOUT).send().await.ok()?;
                Metrics::parse(&reply.text().await.ok()?).value(series)
            }
        };
        poll_until(what, within, probe, move |v| done(*v))
    }

    fn answered(
        &self,
        caller: &std::panic::Location<'_>,
        url: &str,
        result: reqwest::Result<Reply>,
    ) -> Reply {
        result.unwrap_or_else(|e| {
            panic!(
                "{caller}: {url}: no answer from {}: {e}; its output:\n{}",
                self.bin.name(),
                self.logs()
            )
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let running = self.try_exit().is_none();
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- {} at {} ({}), last output:\n{}",
                self.bin.name(),
                self.addr,
                if running { "killed" } else { "had exited" },
                self.logs()
            );
        }
    }
}

/// Sends `signal` (`TERM`, `INT`, `KILL`, …) to process `pid` with `kill(1)`.
#[track_caller]
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_from_json_log_lines() {
        let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let line = r#"{"timestamp":"t","level":"INFO","fields":{"message":"listening","addr":"127.0.0.1:4321","metrics_addr":"127.0.0.1:4322"},"target":"executor"}"#;
        assert_eq!(address_in(line), Some((at(4321), Some(at(4322)))));
        assert_eq!(
            address_in(r#"{"fields":{"addr":"http://127.0.0.1:9"}}"#),
            Some((at(9), None))
        );
        assert_eq!(address_in("listening on 127.0.0.1:1"), None);
        assert_eq!(address_in(r#"{"fields":{"message":"x"}}"#), None);
    }

    #[test]
    fn the_log_keeps_the_last_lines() {
        let log = Log::default();
        for i in 0..LOG_LINES + 5 {
            log.push(i.to_string());
        }
        let tail = log.tail();
        assert!(tail.starts_with("5\n"), "{tail:.20}");
        assert!(tail.ends_with(&format!("{}\n", LOG_LINES + 4)));
    }
}
