//! The load tester against real processes on 127.0.0.1: executors, gateways and the baseline,
//! driven through the `loadtest` binary as an operator would (its exit code included).
//!
//! The executor and gateway binaries come from `RUNBOX_BIN_DIR`, else from beside `loadtest`
//! (one workspace target directory). The guest comes from `EXECUTOR_GUEST_WASM`, else
//! `.runbox/guest/python.wasm`; the executors use their default AOT cache unless
//! `EXECUTOR_CACHE_DIR` says otherwise.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use loadtest::report::Report;

fn bin_dir() -> PathBuf {
    std::env::var_os("RUNBOX_BIN_DIR").map_or_else(
        || {
            Path::new(env!("CARGO_BIN_EXE_loadtest"))
                .parent()
                .expect("a directory")
                .to_owned()
        },
        PathBuf::from,
    )
}

fn runbox_binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace (`cargo build`) or set RUNBOX_BIN_DIR",
        path.display()
    );
    path
}

fn guest_wasm() -> PathBuf {
    std::env::var_os("EXECUTOR_GUEST_WASM").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.runbox/guest/python.wasm"),
        PathBuf::from,
    )
}

/// A child process that logs JSON lines, one with `fields.addr`; killed on drop.
struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawning");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent
                    && let Some(addr) = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| v["fields"]["addr"].as_str().and_then(|a| a.parse().ok()))
                {
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("the process never reported its address");
            }
        };
        Proc { child, addr }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn wait_ready(&self) -> &Proc {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if http_get(self.addr, "/readyz").is_some_and(|(code, _)| code == 200) {
                return self;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} never became ready", self.addr);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal `GET` (HTTP/1.1, `Connection: close`): the status and the raw rest.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text))
}

fn executor(name: &str) -> Proc {
    let mut cmd = Command::new(runbox_binary("executor"));
    cmd.env("EXECUTOR_LISTEN", "127.0.0.1:0")
        .env("EXECUTOR_NAME", name)
        .env("EXECUTOR_GUEST_WASM", guest_wasm())
        .env("EXECUTOR_LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    let p = Proc::spawn(cmd);
    p.wait_ready();
    p
}

/// A gateway over `executors` with `balance`, once it counts them all ready.
fn gateway(executors: &[&Proc], balance: &str) -> Proc {
    let urls: Vec<String> = executors.iter().map(|e| e.base()).collect();
    let mut cmd = Command::new(runbox_binary("gateway"));
    cmd.env("GATEWAY_LISTEN", "127.0.0.1:0")
        .env("GATEWAY_EXECUTORS", urls.join(","))
        .env("GATEWAY_BALANCE", balance)
        .env("GATEWAY_RATE_LIMIT_RPS", "0")
        .env("GATEWAY_PROBE_INTERVAL_MS", "100")
        .env("GATEWAY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    let gw = Proc::spawn(cmd);
    let want = format!("gateway_backends{{state=\"ready\"}} {}", executors.len());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http_get(gw.addr, "/metrics").is_some_and(|(_, text)| text.lines().any(|l| l.trim() == want)) {
            return gw;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the gateway never saw {} ready executors", executors.len());
}

fn baseline(env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbox-baseline"));
    cmd.env("BASELINE_LISTEN", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let p = Proc::spawn(cmd);
    p.wait_ready();
    p
}

/// Runs the `loadtest` binary (no progress line), bounded by `timeout`.
fn loadtest(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .arg("--no-progress")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning loadtest");
    let output = child.wait_with_output().expect("loadtest ran");
    eprintln!(
        "loadtest {args:?} → {:?}\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn read_report(path: &Path) -> Report {
    let text = std::fs::read_to_string(path).expect("the JSON report was written");
    serde_json::from_str(&text).expect("the JSON report parses back")
}

/// A run that must succeed; returns its parsed JSON report.
fn run_ok(dir: &Path, name: &str, args: &[&str]) -> Report {
    let json = dir.join(format!("{name}.json"));
    let mut all = args.to_vec();
    all.extend(["--json", json.to_str().unwrap(), "--label", name]);
    let out = loadtest(&all);
    assert_eq!(out.status.code(), Some(0), "loadtest {name} failed");
    read_report(&json)
}

/// `sent = Σ by_http_code + transport = Σ by_status + transport = good + errors + wrong`.
fn assert_counts_add_up(r: &Report) {
    let c = &r.counts;
    assert_eq!(c.sent, c.responses + c.transport_errors, "{c:?}");
    assert_eq!(
        c.sent,
        r.by_http_code.values().sum::<u64>() + c.transport_errors,
        "{r:?}"
    );
    assert_eq!(
        c.sent,
        r.by_status.values().sum::<u64>() + c.transport_errors,
        "{r:?}"
    );
    assert_eq!(c.transport_errors, r.transport_errors.values().sum::<u64>());
    assert_eq!(c.sent, c.good + c.errors + c.wrong_results, "{c:?}");
    assert_eq!(c.sent, r.snippets.iter().map(|s| s.sent).sum::<u64>());
    assert_eq!(c.sent, r.timeline.iter().map(|p| p.completed).sum::<u64>());
    assert_eq!(c.sent, r.timeline.iter().map(|p| p.sent).sum::<u64>());
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn closed_loop_counts_add_up_and_round_robin_is_even() {
    let dir = tempfile::tempdir().unwrap();
    let (e1, e2, e3) = (executor("e1"), executor("e2"), executor("e3"));
    let rr = gateway(&[&e1, &e2, &e3], "round-robin");
    let li = gateway(&[&e1, &e2, &e3], "least-inflight");
    let svg = dir.path().join("rr.svg");

    let a = run_ok(
        dir.path(),
        "rr",
        &[
            "--url",
            &rr.base(),
            "--workers",
            "3",
            "--requests",
            "30",
            "--plot",
            svg.to_str().unwrap(),
        ],
    );
    assert_eq!(a.counts.sent, 90);
    assert_eq!(a.counts.good, 90, "{:?}", a.counts);
    assert_eq!(a.by_http_code["200"], 90);
    assert_eq!(a.by_status["ok"], 90);
    assert_counts_add_up(&a);
    assert_eq!(a.settings.mode, "closed");
    assert_eq!(a.latency_basis, "send");
    assert_eq!(a.executors.len(), 3, "{:?}", a.executors);
    for (name, n) in &a.executors {
        assert!(
            (29..=31).contains(n),
            "round robin gave {name} {n} of 90: {:?}",
            a.executors
        );
    }
    assert!(a.fairness.unwrap() <= 31.0 / 29.0, "{:?}", a.fairness);
    assert!(a.latency_ms.min_ms > 0.0 && a.latency_ms.min_ms <= a.latency_ms.p50_ms);
    assert!(a.latency_ms.p50_ms <= a.latency_ms.p99_ms && a.latency_ms.p99_ms <= a.latency_ms.max_ms);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));

    let b = run_ok(
        dir.path(),
        "li",
        &["--url", &li.base(), "--workers", "3", "--requests", "30"],
    );
    assert_eq!(b.counts.sent, 90);
    assert_counts_add_up(&b);
    assert_eq!(b.executors.values().sum::<u64>(), 90);

    let (ja, jb) = (dir.path().join("rr.json"), dir.path().join("li.json"));
    let out = loadtest(&["--compare", ja.to_str().unwrap(), jb.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("ratio (b/a)") && text.contains("throughput (req/s)"),
        "{text}"
    );
    assert!(text.contains("rr") && text.contains("li"), "{text}");
    let out = loadtest(&[
        "--compare",
        ja.to_str().unwrap(),
        jb.to_str().unwrap(),
        "--markdown",
    ]);
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.starts_with("|  | rr | li | ratio (b/a) |"), "{md}");
    assert!(md.contains("| requests | 90 | 90 | 1.00× |"), "{md}");

    let curve = dir.path().join("curve.svg");
    let out = loadtest(&[
        "--summarize",
        ja.to_str().unwrap(),
        jb.to_str().unwrap(),
        "--curve",
        curve.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 3);
    assert!(std::fs::read_to_string(&curve).unwrap().starts_with("<svg"));
}

#[test]
fn wrong_results_are_counted_apart_from_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = executor("solo");
    let scenario = write(
        dir.path(),
        "wrong.yaml",
        r#"
name: deliberately-wrong
snippets:
  - name: right
    code: print('hi')
    weight: 2
    expect: { status: ok, stdout: "hi\n" }
  - name: wrong-stdout
    code: print('hi')
    expect: { status: ok, stdout: "bye\n" }
  - name: wrong-status
    code: 1 / 0
    expect: { status: ok }
"#,
    );
    let r = run_ok(
        dir.path(),
        "wrong",
        &[
            "--url",
            &e.base(),
            "--scenario-file",
            scenario.to_str().unwrap(),
            "--workers",
            "2",
            "--requests",
            "20",
        ],
    );
    assert_counts_add_up(&r);
    assert_eq!(r.scenario, "deliberately-wrong");
    let snippet = |name: &str| r.snippets.iter().find(|s| s.name == name).unwrap();
    let wrong = snippet("wrong-stdout").sent + snippet("wrong-status").sent;
    assert!(
        snippet("wrong-stdout").sent > 0 && snippet("wrong-status").sent > 0,
        "{:?}",
        r.snippets
    );
    assert_eq!(r.counts.wrong_results, wrong);
    assert_eq!(
        snippet("wrong-status").wrong_results,
        snippet("wrong-status").sent
    );
    assert_eq!(snippet("right").wrong_results, 0);
    assert_eq!(
        r.counts.errors, 0,
        "wrong results are not transport or HTTP errors"
    );
    assert_eq!(r.counts.good, snippet("right").sent);
    assert_eq!(r.by_status["error"], snippet("wrong-status").sent);
    assert!(
        r.wrong_examples.iter().any(|w| w.problem.contains("bye")),
        "{:?}",
        r.wrong_examples
    );
    assert!(
        r.wrong_examples
            .iter()
            .any(|w| w.problem.contains("status error"))
    );

    // The same in JSON, gated: any wrong result fails the run.
    let json = write(
        dir.path(),
        "wrong.json",
        r#"{"snippets": [{"code": "print(2 + 2)", "expect": {"stdout": "5\n"}}]}"#,
    );
    let out = loadtest(&[
        "--url",
        &e.base(),
        "--scenario-file",
        json.to_str().unwrap(),
        "--workers",
        "1",
        "--requests",
        "3",
        "--max-wrong",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("MISSED: 3 wrong results"));
}

#[test]
fn open_loop_sends_rate_times_duration_and_watches_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (e1, e2) = (executor("e1"), executor("e2"));
    let gw = gateway(&[&e1, &e2], "round-robin");
    let svg = dir.path().join("open.svg");
    let watch = format!("{}/metrics,{}/metrics", gw.base(), e1.base());
    let r = run_ok(
        dir.path(),
        "open",
        &[
            "--url",
            &gw.base(),
            "--rate",
            "25",
            "--duration",
            "2s",
            "--watch-metrics",
            &watch,
            "--watch-interval",
            "250ms",
            "--plot",
            svg.to_str().unwrap(),
        ],
    );
    assert_eq!(r.counts.sent, 50, "25 req/s for 2 s");
    assert_eq!(r.counts.good, 50);
    assert_counts_add_up(&r);
    assert_eq!(r.settings.mode, "open");
    assert_eq!(r.latency_basis, "intended_send");
    assert_eq!(r.timeline.iter().map(|p| p.offered).sum::<u64>(), 50);
    assert!(r.elapsed_s >= 1.96, "{}", r.elapsed_s);
    assert!((r.executors.values().max().unwrap() - r.executors.values().min().unwrap()) <= 1);
    let gw_samples: Vec<_> = r
        .metrics
        .iter()
        .filter(|m| m.url.starts_with(&gw.base()))
        .collect();
    assert!(gw_samples.len() >= 2, "{:?}", r.metrics);
    assert!(gw_samples.iter().all(|m| m.values["up"] == 1.0));
    assert!(
        gw_samples
            .iter()
            .all(|m| m.values["gateway_backends{state=\"ready\"}"] == 2.0)
    );
    assert!(
        gw_samples
            .iter()
            .all(|m| m.values.contains_key("gateway_inflight_requests"))
    );
    assert!(
        r.metrics
            .iter()
            .any(|m| m.values.contains_key("executor_inflight_executions"))
    );
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.contains("ready backends (replicas)"),
        "the replica count is plotted"
    );
}

#[test]
fn open_loop_latency_counts_from_the_intended_send_time() {
    let dir = tempfile::tempdir().unwrap();
    let e = executor("slow");
    let code = write(
        dir.path(),
        "slow.py",
        "import time\ntime.sleep(0.2)\nprint('done')\n",
    );
    // 10 req/s of 200 ms requests, one at a time: the client falls behind its schedule, and the
    // wait before sending is latency the server caused.
    let r = run_ok(
        dir.path(),
        "slow",
        &[
            "--url",
            &e.base(),
            "--code-file",
            code.to_str().unwrap(),
            "--expect-status",
            "ok",
            "--expect-stdout",
            "done\n",
            "--rate",
            "10",
            "--duration",
            "1s",
            "--max-inflight",
            "1",
        ],
    );
    assert_eq!(r.counts.sent, 10);
    assert_eq!(r.counts.good, 10, "{:?}", r.wrong_examples);
    assert_counts_add_up(&r);
    assert!(
        r.elapsed_s >= 2.0,
        "ten 200 ms requests in a row: {}",
        r.elapsed_s
    );
    assert!(r.service_time_ms.min_ms >= 200.0, "{:?}", r.service_time_ms);
    assert!(
        r.latency_ms.max_ms >= r.service_time_ms.max_ms + 600.0,
        "the last request was due at 0.9 s and sent at ≥ 1.8 s: latency {:?} service {:?}",
        r.latency_ms,
        r.service_time_ms
    );
    assert!(r.latency_ms.p50_ms > r.service_time_ms.p50_ms + 200.0);
}

#[test]
fn thresholds_set_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let e = executor("gate");
    let url = e.base();
    let pass = loadtest(&[
        "--url",
        &url,
        "--workers",
        "1",
        "--requests",
        "5",
        "--max-error-rate",
        "0",
        "--max-p99",
        "30s",
        "--max-wrong",
        "0",
    ]);
    assert_eq!(pass.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&pass.stdout).contains("thresholds   passed"));

    let slow = loadtest(&[
        "--url",
        &url,
        "--scenario",
        "cpu",
        "--workers",
        "1",
        "--requests",
        "2",
        "--max-p99",
        "1ms",
    ]);
    assert_eq!(slow.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&slow.stdout).contains("MISSED: p99"));

    // Nothing listens on a port just released: every request is a connect error.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let json = dir.path().join("down.json");
    let down = loadtest(&[
        "--url",
        &format!("http://{closed}"),
        "--workers",
        "1",
        "--requests",
        "3",
        "--max-error-rate",
        "10%",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(down.status.code(), Some(3));
    let r = read_report(&json);
    assert_eq!(r.counts.transport_errors, 3);
    assert_eq!(r.transport_errors["connect"], 3);
    assert_eq!(r.error_rate, 1.0);
    assert!(!r.threshold_result.passed);
    assert_counts_add_up(&r);

    let unbounded = loadtest(&["--url", &url, "--workers", "1"]);
    assert_eq!(unbounded.status.code(), Some(1), "a run must be bounded");
    let usage = loadtest(&["--workers", "1", "--rate", "5"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn the_mixed_scenario_holds_its_limits_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let (e1, e2) = (executor("m1"), executor("m2"));
    let gw = gateway(&[&e1, &e2], "round-robin");
    let r = run_ok(
        dir.path(),
        "mixed",
        &[
            "--url",
            &gw.base(),
            "--scenario",
            "mixed",
            "--workers",
            "4",
            "--requests",
            "12",
            "--seed",
            "3",
        ],
    );
    assert_eq!(r.counts.sent, 48);
    assert_eq!(r.counts.errors, 0, "{:?}", r.by_http_code);
    assert_eq!(r.counts.wrong_results, 0, "{:?}", r.wrong_examples);
    assert_counts_add_up(&r);
    assert!(r.by_status.len() >= 3, "{:?}", r.by_status);
    assert_eq!(r.executors.values().copied().collect::<Vec<_>>(), [24, 24]);
}

#[test]
fn the_baseline_serves_the_same_contract() {
    let dir = tempfile::tempdir().unwrap();
    let python = std::env::var("BASELINE_PYTHON").unwrap_or_else(|_| "python3".into());
    let b = baseline(&[("BASELINE_PYTHON", &python)]);
    let scenario = write(
        dir.path(),
        "contract.yaml",
        r#"
snippets:
  - { name: hello, code: "print('hi')", weight: 3, expect: { status: ok, stdout: "hi\n" } }
  - name: stdin-args
    code: "import sys\nprint(sys.argv[1:], input())"
    stdin: "x\n"
    args: ["-v"]
    expect: { status: ok, stdout: "['-v'] x\n" }
  - { name: exception, code: "1 / 0", expect: { status: error } }
  - name: timeout
    code: "import time\ntime.sleep(30)"
    limits: { timeout_ms: 300 }
    expect: { status: timeout }
  - name: flood
    code: "print('x' * 100000)"
    limits: { output_bytes: 1024 }
    expect: { status: ok, truncated: true, stdout_max_bytes: 1024 }
"#,
    );
    let r = run_ok(
        dir.path(),
        "baseline",
        &[
            "--url",
            &b.base(),
            "--scenario-file",
            scenario.to_str().unwrap(),
            "--workers",
            "2",
            "--requests",
            "8",
        ],
    );
    assert_eq!(r.counts.sent, 16);
    assert_eq!(r.counts.errors, 0, "{:?}", r.by_error_code);
    assert_eq!(r.counts.wrong_results, 0, "{:?}", r.wrong_examples);
    assert_eq!(r.executors["baseline"], 16);
    assert_counts_add_up(&r);

    // One interpreter, no queue: the rest is turned away with 429, counted as errors.
    let busy = baseline(&[
        ("BASELINE_PYTHON", &python),
        ("BASELINE_CONCURRENCY", "1"),
        ("BASELINE_QUEUE_DEPTH", "0"),
    ]);
    let code = write(dir.path(), "nap.py", "import time\ntime.sleep(0.3)\n");
    let json = dir.path().join("busy.json");
    let out = loadtest(&[
        "--url",
        &busy.base(),
        "--code-file",
        code.to_str().unwrap(),
        "--workers",
        "3",
        "--requests",
        "3",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let r = read_report(&json);
    assert_counts_add_up(&r);
    assert!(
        r.by_http_code.get("429").is_some_and(|n| *n > 0),
        "{:?}",
        r.by_http_code
    );
    assert_eq!(r.by_error_code["overloaded"], r.by_http_code["429"]);
    assert_eq!(r.counts.errors, r.by_http_code["429"]);
    assert_eq!(r.by_status["http_429"], r.by_http_code["429"]);
}

#[test]
fn ctrl_c_prints_the_report_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let e = executor("int");
    let json = dir.path().join("int.json");
    let child = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "--no-progress",
            "--url",
            &e.base(),
            "--workers",
            "2",
            "--duration",
            "60s",
            "--json",
        ])
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "it stopped promptly");
    assert_eq!(out.status.code(), Some(130));
    assert!(String::from_utf8_lossy(&out.stdout).contains("INTERRUPTED"));
    let r = read_report(&json);
    assert!(r.interrupted);
    assert!(r.counts.sent > 0);
    assert!(r.elapsed_s < 10.0, "{}", r.elapsed_s);
    assert_counts_add_up(&r);
}
