//! The load tester against real processes on 127.0.0.1 (started with `testkit`): executors,
//! gateways and the baseline, driven through the `loadtest` binary as an operator would (its exit
//! code included).
//!
//! The tests of the client itself (expectations, thresholds, open-loop timing, Ctrl-C) run
//! against `runbox-baseline`, which needs only `python3`; those about runbox (round robin, the
//! limits under load, the gateway's metrics) against executors and gateways, whose binaries
//! `testkit` finds in the target directory (`cargo xtask test` builds them; alone: `cargo build
//! -p executor -p gateway` first). The guest and AOT cache come from `EXECUTOR_GUEST_WASM` and
//! `EXECUTOR_CACHE_DIR` (see `testkit`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use loadtest::report::Report;
use runbox_api::{ErrorCode, ExecuteRequest, LimitKind, Status};
use testkit::Proc;

/// Longest one `loadtest` run may take here.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

async fn executor(name: &str) -> Proc {
    testkit::executor(name).ready().await
}

/// A gateway over `executors` with `balance`, once it counts them all ready.
async fn gateway(executors: &[&Proc], balance: &str) -> Proc {
    let gw = testkit::gateway()
        .executors(executors)
        .envs(&[("GATEWAY_BALANCE", balance), ("GATEWAY_RATE_LIMIT_RPS", "0")])
        .start()
        .await;
    let n = executors.len() as f64;
    gw.wait_metric(
        "gateway_backends{state=\"ready\"}",
        Duration::from_secs(30),
        |v| v == Some(n),
    )
    .await;
    gw
}

async fn baseline(env: &[(&str, &str)]) -> Proc {
    testkit::baseline().envs(env).ready().await
}

fn loadtest_command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"));
    cmd.arg("--no-progress")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs the `loadtest` binary (no progress line), bounded by [`RUN_TIMEOUT`].
async fn loadtest(args: &[&str]) -> Output {
    let child = loadtest_command(args).spawn().expect("spawning loadtest");
    let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("loadtest {args:?} still running after {RUN_TIMEOUT:?}"))
        .expect("loadtest ran");
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
async fn run_ok(dir: &Path, name: &str, args: &[&str]) -> Report {
    let json = dir.join(format!("{name}.json"));
    let mut all = args.to_vec();
    all.extend(["--json", json.to_str().unwrap(), "--label", name]);
    let out = loadtest(&all).await;
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

fn count(map: &std::collections::BTreeMap<String, u64>, key: &str) -> u64 {
    map.get(key).copied().unwrap_or(0)
}

#[tokio::test]
async fn closed_loop_counts_add_up_and_round_robin_is_even() {
    let dir = tempfile::tempdir().unwrap();
    let (e1, e2, e3) = (executor("e1").await, executor("e2").await, executor("e3").await);
    let rr = gateway(&[&e1, &e2, &e3], "round-robin").await;
    let li = gateway(&[&e1, &e2, &e3], "least-inflight").await;
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
    )
    .await;
    assert_eq!(a.counts.sent, 90);
    assert_eq!(a.counts.good, 90, "{:?}", a.counts);
    assert_eq!(a.by_http_code["200"], 90);
    assert_eq!(a.by_status["ok"], 90);
    assert!(a.by_limit.is_empty(), "{:?}", a.by_limit);
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
    )
    .await;
    assert_eq!(b.counts.sent, 90);
    assert_counts_add_up(&b);
    assert_eq!(b.executors.values().sum::<u64>(), 90);

    let (ja, jb) = (dir.path().join("rr.json"), dir.path().join("li.json"));
    let out = loadtest(&["--compare", ja.to_str().unwrap(), jb.to_str().unwrap()]).await;
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
    ])
    .await;
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
    ])
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 3);
    assert!(std::fs::read_to_string(&curve).unwrap().starts_with("<svg"));
}

#[tokio::test]
async fn wrong_results_are_counted_apart_from_errors() {
    let dir = tempfile::tempdir().unwrap();
    let b = baseline(&[]).await;
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
            &b.base(),
            "--scenario-file",
            scenario.to_str().unwrap(),
            "--workers",
            "2",
            "--requests",
            "20",
        ],
    )
    .await;
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
        &b.base(),
        "--scenario-file",
        json.to_str().unwrap(),
        "--workers",
        "1",
        "--requests",
        "3",
        "--max-wrong",
        "0",
    ])
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("MISSED: 3 wrong results"));

    // A limit the contract refuses is caught when the file is read, before anything is sent.
    let zero = write(
        dir.path(),
        "zero.yaml",
        "snippets:\n  - code: print(1)\n    limits: { timeout_ms: 0 }\n",
    );
    let out = loadtest(&[
        "--url",
        &b.base(),
        "--scenario-file",
        zero.to_str().unwrap(),
        "--workers",
        "1",
        "--requests",
        "1",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("zero.yaml"));
}

#[tokio::test]
async fn open_loop_sends_rate_times_duration_and_watches_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (e1, e2) = (executor("e1").await, executor("e2").await);
    let gw = gateway(&[&e1, &e2], "round-robin").await;
    let svg = dir.path().join("open.svg");
    let watch = format!("{},{}", gw.metrics_url(), e1.metrics_url());
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
    )
    .await;
    assert_eq!(r.counts.sent, 50, "25 req/s for 2 s");
    assert_eq!(r.counts.good, 50);
    assert_counts_add_up(&r);
    assert_eq!(r.settings.mode, "open");
    assert_eq!(r.latency_basis, "intended_send");
    assert_eq!(r.timeline.iter().map(|p| p.offered).sum::<u64>(), 50);
    assert!(r.elapsed_s >= 1.96, "{}", r.elapsed_s);
    assert!((r.executors.values().max().unwrap() - r.executors.values().min().unwrap()) <= 1);
    let gw_samples: Vec<_> = r.metrics.iter().filter(|m| m.url == gw.metrics_url()).collect();
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

#[tokio::test]
async fn open_loop_latency_counts_from_the_intended_send_time() {
    let dir = tempfile::tempdir().unwrap();
    let b = baseline(&[]).await;
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
            &b.base(),
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
    )
    .await;
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

#[tokio::test]
async fn thresholds_set_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let b = baseline(&[]).await;
    let url = b.base();
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
    ])
    .await;
    assert_eq!(pass.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&pass.stdout).contains("thresholds   passed"));

    // No native interpreter starts in a millisecond.
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
    ])
    .await;
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
    ])
    .await;
    assert_eq!(down.status.code(), Some(3));
    let r = read_report(&json);
    assert_eq!(r.counts.transport_errors, 3);
    assert_eq!(r.transport_errors["connect"], 3);
    assert_eq!(r.error_rate, 1.0);
    assert!(!r.threshold_result.passed);
    assert_counts_add_up(&r);

    let unbounded = loadtest(&["--url", &url, "--workers", "1"]).await;
    assert_eq!(unbounded.status.code(), Some(1), "a run must be bounded");
    let usage = loadtest(&["--workers", "1", "--rate", "5"]).await;
    assert_eq!(usage.status.code(), Some(2));
    let bad_duration = loadtest(&["--workers", "1", "--duration", "5 parsecs"]).await;
    assert_eq!(bad_duration.status.code(), Some(2));
    let bad_status = loadtest(&["--code-file", "x.py", "--expect-status", "fine", "--workers", "1"]).await;
    assert_eq!(bad_status.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_status.stderr).contains("fuel_exhausted"));
}

#[tokio::test]
async fn the_mixed_scenario_holds_its_limits_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let (e1, e2) = (executor("m1").await, executor("m2").await);
    let gw = gateway(&[&e1, &e2], "round-robin").await;
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
    )
    .await;
    assert_eq!(r.counts.sent, 48);
    assert_eq!(r.counts.errors, 0, "{:?}", r.by_http_code);
    assert_eq!(r.counts.wrong_results, 0, "{:?}", r.wrong_examples);
    assert_counts_add_up(&r);
    assert!(r.by_status.len() >= 3, "{:?}", r.by_status);
    assert_eq!(r.executors.values().copied().collect::<Vec<_>>(), [24, 24]);
    // Each run a limit ended names that limit in `limit`.
    for (kind, status) in [
        (LimitKind::Timeout, Status::Timeout),
        (LimitKind::Fuel, Status::FuelExhausted),
        (LimitKind::Memory, Status::MemoryExceeded),
    ] {
        assert_eq!(
            count(&r.by_limit, kind.as_str()),
            count(&r.by_status, status.as_str()),
            "{:?} / {:?}",
            r.by_limit,
            r.by_status
        );
    }
}

#[tokio::test]
async fn the_files_scenario_gets_its_output_file_back_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let (e1, e2) = (executor("f1").await, executor("f2").await);
    let gw = gateway(&[&e1, &e2], "round-robin").await;
    let r = run_ok(
        dir.path(),
        "files",
        &[
            "--url",
            &gw.base(),
            "--scenario",
            "files",
            "--workers",
            "2",
            "--requests",
            "10",
        ],
    )
    .await;
    assert_eq!(r.counts.sent, 20);
    assert_eq!(r.counts.errors, 0, "{:?}", r.by_http_code);
    assert_eq!(r.counts.wrong_results, 0, "{:?}", r.wrong_examples);
    assert_counts_add_up(&r);
}

#[tokio::test]
async fn the_baseline_serves_the_same_contract() {
    let dir = tempfile::tempdir().unwrap();
    let b = baseline(&[]).await;
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
    )
    .await;
    assert_eq!(r.counts.sent, 16);
    assert_eq!(r.counts.errors, 0, "{:?}", r.by_error_code);
    assert_eq!(r.counts.wrong_results, 0, "{:?}", r.wrong_examples);
    assert_eq!(r.executors["baseline"], 16);
    assert_counts_add_up(&r);
    let sent = |name: &str| r.snippets.iter().find(|s| s.name == name).unwrap().sent;
    assert_eq!(count(&r.by_limit, "timeout"), sent("timeout"), "{:?}", r.by_limit);
    assert_eq!(count(&r.by_limit, "output"), sent("flood"), "{:?}", r.by_limit);

    // One interpreter, no queue: the rest is turned away with 429, counted as errors.
    let busy = baseline(&[("BASELINE_CONCURRENCY", "1"), ("BASELINE_QUEUE_DEPTH", "0")]).await;
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
    ])
    .await;
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

#[tokio::test]
async fn the_baseline_answers_in_the_contracts_types_and_stops_on_sigterm() {
    let mut b = testkit::baseline().env("BASELINE_NAME", "native").ready().await;
    let reply = b.execute(&ExecuteRequest::code("print('hi')")).await;
    assert_eq!(reply.executor(), Some("native"));
    let id = reply.request_id().expect("an id").to_owned();
    let r = reply.response();
    assert_eq!((r.status, r.stdout.as_str(), r.limit), (Status::Ok, "hi\n", None));
    assert_eq!(r.id, id);

    let mut slow = ExecuteRequest::code("while True:\n    pass");
    slow.limits = Some(serde_json::from_str(r#"{"timeout_ms": 250, "fuel": 1}"#).unwrap());
    let r = b.execute(&slow).await.response();
    let hit = r.limit.expect("the timeout is named");
    assert_eq!(
        (r.status, hit.kind, hit.value),
        (Status::Timeout, LimitKind::Timeout, 250)
    );

    b.post_raw("/execute", "application/json", "{")
        .await
        .expect_error(400, ErrorCode::InvalidJson);
    b.post_json(
        "/execute",
        &serde_json::json!({"code": "1", "limits": {"fuel": 0}}),
    )
    .await
    .expect_error(422, ErrorCode::InvalidLimits);
    b.get("/nowhere").await.expect_error(404, ErrorCode::NotFound);
    let runtimes: runbox_api::RuntimesResponse = b.get("/runtimes").await.json();
    assert_eq!(runtimes.runtimes[0].name, "python");

    b.terminate();
    let status = b.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}: {}", b.logs());
    assert!(b.logs().contains("baseline listening"), "{}", b.logs());
}

#[tokio::test]
async fn the_baseline_refuses_a_remote_address_with_the_reason() {
    let e = testkit::baseline()
        .listen("0.0.0.0:0")
        .try_start()
        .await
        .expect_err("a non-loopback address needs consent");
    assert!(e.status.is_some_and(|s| !s.success()), "{e}");
    assert!(e.output.contains("not a loopback address"), "{e}");
}

#[tokio::test]
async fn ctrl_c_prints_the_report_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let b = baseline(&[]).await;
    // Each request leaves a mark, so the test knows when requests are flowing.
    let marker = dir.path().join("sent");
    let code = write(
        dir.path(),
        "mark.py",
        &format!("open({:?}, 'a').close()\nprint('hi')\n", marker.to_str().unwrap()),
    );
    let json = dir.path().join("int.json");
    let child = loadtest_command(&[
        "--url",
        &b.base(),
        "--code-file",
        code.to_str().unwrap(),
        "--workers",
        "2",
        "--duration",
        "60s",
        "--json",
        json.to_str().unwrap(),
    ])
    .spawn()
    .unwrap();
    testkit::poll_until(
        "a request reached the baseline",
        Duration::from_secs(30),
        || std::future::ready(marker.exists()),
        |exists| *exists,
    )
    .await;
    testkit::send_signal(child.id().expect("running"), "INT");
    let started = tokio::time::Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("loadtest stopped after SIGINT")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "it stopped promptly");
    assert_eq!(out.status.code(), Some(130));
    assert!(String::from_utf8_lossy(&out.stdout).contains("INTERRUPTED"));
    let r = read_report(&json);
    assert!(r.interrupted);
    assert!(r.counts.sent > 0);
    assert!(r.elapsed_s < 10.0, "{}", r.elapsed_s);
    assert_counts_add_up(&r);
}
