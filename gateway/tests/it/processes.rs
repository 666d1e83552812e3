//! The gateway binary in front of real executor processes (`testkit`): the
//! executor binary must be built into the same target directory (`cargo
//! xtask test` builds every binary). Ordering is by polling the gauge a test
//! asserts next, never by sleeping.

use std::collections::HashMap;
use std::time::Duration;

use runbox_api::{ErrorCode, ExecuteRequest};
use testkit::{Proc, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WITHIN: Duration = Duration::from_secs(30);

/// Waits until the gateway counts `n` ready executors.
async fn wait_backends(gw: &Proc, n: usize) {
    gw.wait_metric("gateway_backends{state=\"ready\"}", WITHIN, |v| {
        v == Some(n as f64)
    })
    .await;
}

/// Waits until `proc` (an executor, or an embedded gateway) runs `n` executions.
async fn wait_running(proc: &Proc, n: usize) {
    proc.wait_metric("executor_inflight_executions", WITHIN, |v| v == Some(n as f64))
        .await;
}

fn tally<'a>(names: impl IntoIterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut counts = HashMap::new();
    for n in names {
        *counts.entry(n).or_default() += 1;
    }
    counts
}

/// `code` through the gateway, from a task of its own.
fn spawn_execute(gw: &Proc, code: &str) -> tokio::task::JoinHandle<Reply> {
    let (client, url, request) = (gw.client().clone(), gw.base(), ExecuteRequest::code(code));
    tokio::spawn(async move { testkit::http::execute(&client, &url, &request).await.unwrap() })
}

#[tokio::test]
async fn round_robin_is_exact_over_three_real_executors() {
    let mut execs = Vec::new();
    for i in 0..3 {
        execs.push(testkit::executor(&format!("exec-{i}")).start().await);
    }
    let refs: Vec<&Proc> = execs.iter().collect();
    let gw = testkit::gateway()
        .executors(&refs)
        .env("GATEWAY_RATE_LIMIT_RPS", "0")
        .start()
        .await;
    wait_backends(&gw, 3).await;
    let mut names = Vec::new();
    for i in 0..30 {
        let reply = gw.execute(&ExecuteRequest::code(format!("print({i})"))).await;
        let result = reply.response();
        assert_eq!(result.stdout, format!("{i}\n"));
        let executor = reply.executor().expect("x-runbox-executor").to_owned();
        let index = execs
            .iter()
            .position(|p| p.base() == executor)
            .expect("a known executor");
        assert_eq!(result.executor, format!("exec-{index}"));
        names.push(executor);
    }
    let counts = tally(names.iter().map(String::as_str));
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n == 10), "{counts:?}");
}

#[tokio::test]
async fn a_killed_executor_costs_only_its_in_flight_requests_and_comes_back() {
    let mut execs = Vec::new();
    for i in 0..3 {
        execs.push(testkit::executor(&format!("exec-{i}")).start().await);
    }
    let gw = testkit::gateway()
        .executors(&execs.iter().collect::<Vec<_>>())
        .env("GATEWAY_RATE_LIMIT_RPS", "0")
        .start()
        .await;
    wait_backends(&gw, 3).await;
    let victim_addr = execs[1].addr();
    let victim = execs[1].base();

    // A bounded burst from 6 workers; the victim is SIGKILLed mid-way.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (client, base, done) = (gw.client().clone(), gw.base(), done_tx.clone());
            tokio::spawn(async move {
                let request = ExecuteRequest::code("import time\ntime.sleep(0.03)\nprint('ok')");
                let mut results = Vec::new();
                for _ in 0..15 {
                    let reply = testkit::http::execute(&client, &base, &request).await.unwrap();
                    let _ = done.send(());
                    results.push(reply);
                }
                results
            })
        })
        .collect();
    for _ in 0..20 {
        done_rx.recv().await;
    }
    execs[1].kill();
    let mut results = Vec::new();
    for w in workers {
        results.extend(w.await.unwrap());
    }
    assert_eq!(results.len(), 90);
    let failed: Vec<&Reply> = results.iter().filter(|r| r.status != 200).collect();
    for reply in &failed {
        let code = reply.error().error.code;
        assert_eq!(reply.status, 502, "{}", reply.text());
        assert!(
            [ErrorCode::UpstreamFailed, ErrorCode::UpstreamUnreachable].contains(&code),
            "{}",
            reply.text()
        );
    }
    // Only requests in flight on the victim at the kill may fail: at most one per worker.
    assert!(failed.len() <= 6, "{} failed: {failed:?}", failed.len());
    for reply in results.iter().filter(|r| r.status == 200) {
        assert_eq!(reply.response().stdout, "ok\n");
    }

    // The dead one is ejected: everything now goes to the two others.
    wait_backends(&gw, 2).await;
    for _ in 0..10 {
        let reply = gw.execute(&ExecuteRequest::code("print(1)")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_ne!(reply.executor(), Some(victim.as_str()));
    }

    // Restarted on the same address, it is re-admitted.
    execs[1] = testkit::executor("exec-1-again")
        .listen(victim_addr)
        .start()
        .await;
    wait_backends(&gw, 3).await;
    let mut names = Vec::new();
    for _ in 0..6 {
        names.push(
            gw.execute(&ExecuteRequest::code("print(1)"))
                .await
                .executor()
                .unwrap()
                .to_owned(),
        );
    }
    assert!(names.contains(&victim), "{names:?}");
    assert!(
        gw.metric("gateway_requests_total{code=\"200\"}")
            .await
            .unwrap_or(0.0)
            >= 80.0
    );
}

/// Accepts connections; answers `/readyz` with 200 and nothing else, ever
/// (until the test ends).
async fn hanging_executor() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                if String::from_utf8_lossy(&buf[..n]).starts_with("GET /readyz") {
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                } else {
                    std::future::pending::<()>().await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_hanging_executor_costs_only_the_timeout() {
    let hang = hanging_executor().await;
    let real = testkit::executor("real").start().await;
    let gw = testkit::gateway()
        .env("GATEWAY_EXECUTORS", format!("http://{hang},{}", real.base()))
        .env("GATEWAY_REQUEST_TIMEOUT_MS", "500")
        .env("GATEWAY_RATE_LIMIT_RPS", "0")
        .start()
        .await;
    wait_backends(&gw, 2).await;
    let started = std::time::Instant::now();
    let request = ExecuteRequest::code("print('x')");
    let results = futures::future::join_all((0..4).map(|_| gw.execute(&request))).await;
    let timeouts = results.iter().filter(|r| r.status == 504).count();
    let oks = results.iter().filter(|r| r.status == 200).count();
    assert_eq!((timeouts, oks), (2, 2), "{results:?}");
    for reply in results.iter().filter(|r| r.status == 504) {
        reply.expect_error(504, ErrorCode::UpstreamTimeout);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The gateway itself stayed responsive.
    assert_eq!(gw.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn no_ready_executor_is_503_with_retry_after() {
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = testkit::gateway()
        .env("GATEWAY_EXECUTORS", format!("http://{closed}"))
        .start()
        .await;
    let reply = gw.execute(&ExecuteRequest::code("print(1)")).await;
    reply.expect_error(503, ErrorCode::NoExecutors);
    assert_eq!(reply.header("retry-after"), Some("1"));
    gw.get("/readyz").await.expect_error(503, ErrorCode::NoExecutors);
}

#[tokio::test]
async fn executor_429_is_tried_elsewhere_then_passed_through() {
    let busy = testkit::executor("busy")
        .env("EXECUTOR_CONCURRENCY", "1")
        .env("EXECUTOR_QUEUE_DEPTH", "0")
        .ready()
        .await;
    let gw = testkit::gateway()
        .executors(&[&busy])
        .env("GATEWAY_RATE_LIMIT_RPS", "0")
        .start()
        .await;
    wait_backends(&gw, 1).await;
    let slow = spawn_execute(&gw, "import time; time.sleep(1)");
    wait_running(&busy, 1).await;
    let reply = gw.execute(&ExecuteRequest::code("print(1)")).await;
    reply.expect_error(429, ErrorCode::Overloaded);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.executor(), Some(busy.base().as_str()));
    assert_eq!(slow.await.unwrap().status, 200);

    // With a second executor, the busy answer is retried there instead.
    let spare = testkit::executor("spare").start().await;
    let gw = testkit::gateway()
        .executors(&[&busy, &spare])
        .env("GATEWAY_RATE_LIMIT_RPS", "0")
        .start()
        .await;
    wait_backends(&gw, 2).await;
    let hog = {
        let (client, base) = (busy.client().clone(), busy.base());
        let request = ExecuteRequest::code("import time; time.sleep(1.5)");
        tokio::spawn(async move { testkit::http::execute(&client, &base, &request).await.unwrap() })
    };
    wait_running(&busy, 1).await;
    for _ in 0..4 {
        let reply = gw.execute(&ExecuteRequest::code("print(2)")).await;
        assert_eq!(
            (reply.status.as_u16(), reply.executor()),
            (200, Some(spare.base().as_str())),
            "{}",
            reply.text()
        );
    }
    assert_eq!(hog.await.unwrap().status, 200);
    assert!(gw.metric("gateway_retries_total").await.unwrap_or(0.0) >= 1.0);
}

#[tokio::test]
async fn limits_at_the_door_over_real_connections() {
    let exec = testkit::executor("e").start().await;
    let gw = testkit::gateway()
        .executors(&[&exec])
        .env("GATEWAY_MAX_BODY_BYTES", "200")
        .env("GATEWAY_RATE_LIMIT_RPS", "1")
        .env("GATEWAY_RATE_LIMIT_BURST", "3")
        .start()
        .await;
    wait_backends(&gw, 1).await;
    // Body cap: obeyed, then violated.
    assert_eq!(
        gw.execute(&ExecuteRequest::code("#".repeat(100))).await.status,
        200
    );
    let reply = gw.execute(&ExecuteRequest::code("#".repeat(300))).await;
    let body = reply.expect_error(413, ErrorCode::PayloadTooLarge);
    assert!(body.error.message.contains("200 bytes"), "{}", body.error.message);
    // Rate: those two took 2 of the burst of 3; one more passes, then this
    // client is refused with a wait (refill is 1/s, far slower than this).
    assert_eq!(gw.execute(&ExecuteRequest::code("")).await.status, 200);
    let reply = gw.execute(&ExecuteRequest::code("")).await;
    reply.expect_error(429, ErrorCode::RateLimited);
    let wait: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    // The probes are outside the door.
    assert_eq!(gw.get("/readyz").await.status, 200);
}

#[tokio::test]
async fn the_concurrency_cap_sheds_with_429() {
    let exec = testkit::executor("e").start().await;
    let gw = testkit::gateway()
        .executors(&[&exec])
        .env("GATEWAY_MAX_CONCURRENCY", "1")
        .env("GATEWAY_RATE_LIMIT_RPS", "0")
        .start()
        .await;
    wait_backends(&gw, 1).await;
    let slow = spawn_execute(&gw, "import time; time.sleep(0.8)");
    wait_running(&exec, 1).await;
    let reply = gw.execute(&ExecuteRequest::code("print(1)")).await;
    reply.expect_error(429, ErrorCode::Overloaded);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(slow.await.unwrap().status, 200);
    assert_eq!(gw.execute(&ExecuteRequest::code("print(1)")).await.status, 200);
}

#[tokio::test]
async fn connect_failures_are_retried_elsewhere_and_eject_the_executor() {
    let mut a = testkit::executor("a").ready().await;
    let b = testkit::executor("b").ready().await;
    // Probes are slow here, so only the passive path can notice a dead executor.
    let gw = testkit::gateway()
        .executors(&[&a, &b])
        .env("GATEWAY_RATE_LIMIT_RPS", "0")
        .env("GATEWAY_PROBE_INTERVAL_MS", "60000")
        .start()
        .await;
    wait_backends(&gw, 2).await;
    a.kill();
    for _ in 0..4 {
        let reply = gw.execute(&ExecuteRequest::code("print('still')")).await;
        assert_eq!(
            (reply.status.as_u16(), reply.executor()),
            (200, Some(b.base().as_str())),
            "{}",
            reply.text()
        );
    }
    assert_eq!(gw.metric("gateway_retries_total").await, Some(1.0));
    assert_eq!(
        gw.metric("gateway_backends{state=\"ready\"}").await,
        Some(1.0),
        "the dead executor is ejected at once"
    );

    // With every executor gone, the answer is a clean 502, then 503.
    drop(b);
    let reply = gw.execute(&ExecuteRequest::code("print(1)")).await;
    reply.expect_error(502, ErrorCode::UpstreamUnreachable);
    let reply = gw.execute(&ExecuteRequest::code("print(1)")).await;
    reply.expect_error(503, ErrorCode::NoExecutors);
}

#[cfg(not(feature = "embedded"))]
#[tokio::test]
async fn without_the_embedded_executor_the_gateway_refuses_to_start_alone() {
    let error = testkit::gateway()
        .env_remove("GATEWAY_EXECUTORS")
        .try_start()
        .await
        .expect_err("no executors and no embedded one");
    assert!(error.status.is_some_and(|s| !s.success()), "{error}");
    assert!(
        error.output.contains(gateway::config::NO_EMBEDDED_EXECUTOR),
        "{error}"
    );
}

#[cfg(feature = "embedded")]
#[tokio::test]
async fn embedded_mode_serves_api_playground_and_metrics_from_one_process() {
    let gw = testkit::gateway()
        .env("EXECUTOR_NAME", "embedded-exec")
        .ready()
        .await;
    let reply = Reply::read(
        gw.client()
            .post(gw.url("/execute"))
            .header("x-request-id", "my-id")
            .json(&serde_json::json!({"code": "print(6*7)"}))
            .send()
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        (reply.executor(), reply.request_id()),
        (Some("embedded-exec"), Some("my-id"))
    );
    let result = reply.response();
    assert_eq!(
        (result.status, result.stdout.as_str(), result.id.as_str()),
        (runbox_api::Status::Ok, "42\n", "my-id")
    );
    // The executor's own errors pass through with their code.
    gw.post_json("/execute", &serde_json::json!({"code": 1}))
        .await
        .expect_error(400, ErrorCode::InvalidRequest);
    let runtimes: runbox_api::RuntimesResponse = gw.get("/runtimes").await.json();
    assert_eq!(runtimes.runtimes[0].name, "python");
    gw.get("/no-such-thing")
        .await
        .expect_error(404, ErrorCode::NotFound);

    // The real playground, not the page saying it was not built.
    let page = gw.get("/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let html = page.text();
    assert_ne!(
        html,
        gateway::assets::NOT_BUILT,
        "frontend/dist was not built: run `cargo xtask run` or `cargo xtask test`"
    );
    assert!(html.contains(r#"<script defer src="app.js">"#), "{html}");
    let app = gw.get("/app.js").await;
    assert_eq!(app.status, 200);
    assert_eq!(app.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert!(
        app.body.len() > 10_000,
        "the CodeMirror bundle: {} bytes",
        app.body.len()
    );

    let metrics = gw.metrics().await;
    assert_eq!(
        metrics.value("executor_executions_total{status=\"ok\"}"),
        Some(1.0),
        "{}",
        metrics.text()
    );
    assert!(
        metrics
            .value("gateway_requests_total{code=\"200\"}")
            .unwrap_or(0.0)
            >= 2.0
    );
}

#[cfg(feature = "embedded")]
#[tokio::test]
async fn sigterm_finishes_in_flight_requests() {
    let mut gw = testkit::gateway().ready().await;
    let in_flight = spawn_execute(&gw, "import time\ntime.sleep(1)\nprint('done')");
    wait_running(&gw, 1).await;
    gw.terminate();
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.response().stdout, "done\n");
    assert!(gw.wait_exit(WITHIN).await.success());
}

#[cfg(feature = "embedded")]
#[tokio::test]
async fn an_embedded_runtime_that_fails_to_load_ends_the_process_with_the_reason() {
    let mut gw = testkit::gateway()
        .env("EXECUTOR_GUEST_WASM", "/nonexistent/python.wasm")
        .env("EXECUTOR_NO_CACHE", "true")
        .start()
        .await;
    let status = gw.wait_exit(WITHIN).await;
    assert!(!status.success(), "{status}");
    let logs = gw.logs();
    assert!(logs.contains("the embedded executor failed to load"), "{logs}");
}
