//! The real executor binary over HTTP on 127.0.0.1: the API contract, its
//! error codes, admission control, readiness and the SIGTERM drain.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

async fn post(ex: &ExecutorProcess, body: &Value) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = reqwest::Client::new()
        .post(ex.url("/execute"))
        .json(body)
        .send()
        .await
        .expect("request sent");
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.json().await.expect("a JSON body"))
}

async fn post_raw(ex: &ExecutorProcess, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(ex.url("/execute"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request sent");
    (r.status(), r.json().await.expect("a JSON body"))
}

#[track_caller]
fn assert_error(got: (StatusCode, Value), status: u16, code: &str) {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(
        got.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
    assert!(got.1["id"].as_str().is_some(), "{}", got.1);
}

#[tokio::test]
async fn execute_contract() {
    let ex = ExecutorProcess::start(&[("EXECUTOR_NAME", "exec-test-1")]);
    ex.wait_ready().await;
    let (status, headers, body) = post(
        &ex,
        &json!({"code": "import sys\nprint(input(), sys.argv[1:])", "stdin": "hey", "args": ["a"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["exit_code"], 0);
    assert_eq!(body["stdout"], "hey ['a']\n");
    assert_eq!(body["stderr"], "");
    assert_eq!(body["truncated"], json!({"stdout": false, "stderr": false}));
    assert!(body["duration_ms"].as_f64().is_some_and(|d| d > 0.0));
    assert!(body["fuel_used"].as_u64().is_some_and(|f| f > 0));
    assert_eq!(body["runtime"]["name"], "python");
    assert!(
        body["runtime"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    assert_eq!(body["executor"], "exec-test-1");
    let id = body["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(headers["x-request-id"], id);

    // A client's request id is kept.
    let r = reqwest::Client::new()
        .post(ex.url("/execute"))
        .header("x-request-id", "client-id-42")
        .json(&json!({"code": "raise SystemExit(4)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-id-42");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["status"].clone(), body["exit_code"].clone()),
        (json!("error"), json!(4))
    );
    assert_eq!(body["id"], "client-id-42");

    // Limits are reported through /runtimes and violations are 200s.
    let runtimes: Value = reqwest::get(ex.url("/runtimes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runtimes["runtimes"][0]["name"], "python");
    assert_eq!(runtimes["limits"]["max"]["timeout_ms"], 30_000);
    let (status, _, body) = post(
        &ex,
        &json!({"code": "while True: pass", "limits": {"timeout_ms": 200}}),
    )
    .await;
    assert_eq!((status.as_u16(), body["status"].clone()), (200, json!("timeout")));
    assert_eq!(body["fuel_used"], Value::Null);
}

#[tokio::test]
async fn bad_input_gets_a_stable_error_code() {
    let ex = ExecutorProcess::start(&[
        ("EXECUTOR_MAX_CODE_BYTES", "1000"),
        ("EXECUTOR_MAX_STDIN_BYTES", "1000"),
        ("EXECUTOR_MAX_BODY_BYTES", "5000"),
    ]);
    ex.wait_ready().await;
    let json = "application/json";
    assert_error(
        post_raw(&ex, json, b"{not json".to_vec()).await,
        400,
        "invalid_json",
    );
    assert_error(
        post_raw(&ex, json, b"[1,2]".to_vec()).await,
        400,
        "invalid_request",
    );
    assert_error(
        post_raw(&ex, json, br#"{"stdin": "x"}"#.to_vec()).await,
        400,
        "invalid_request",
    );
    assert_error(
        post_raw(&ex, json, br#"{"code": 5}"#.to_vec()).await,
        400,
        "invalid_request",
    );
    assert_error(
        post_raw(&ex, json, br#"{"code": "", "args": [1]}"#.to_vec()).await,
        400,
        "invalid_request",
    );
    assert_error(
        post_raw(&ex, json, br#"{"code": "", "colour": 1}"#.to_vec()).await,
        400,
        "invalid_request",
    );
    assert_error(
        post_raw(&ex, "text/plain", br#"{"code": ""}"#.to_vec()).await,
        415,
        "unsupported_media_type",
    );
    assert_error(
        post_raw(&ex, json, br#"{"code": "", "runtime": "ruby"}"#.to_vec()).await,
        422,
        "unknown_runtime",
    );
    for limits in [
        r#"{"fuel": 0}"#,
        r#"{"timeout_ms": -5}"#,
        r#"{"memory_bytes": "1"}"#,
        r#"{"cpu": 1}"#,
        "7",
    ] {
        let body = format!(r#"{{"code": "", "limits": {limits}}}"#);
        assert_error(
            post_raw(&ex, json, body.into_bytes()).await,
            422,
            "invalid_limits",
        );
    }

    // Size caps, each obeyed and violated.
    let code_ok = json!({"code": format!("print(1){}", " ".repeat(990))});
    assert_eq!(post(&ex, &code_ok).await.0, 200);
    let code_big = json!({"code": "#".repeat(1001)});
    let (s, _, b) = post(&ex, &code_big).await;
    assert_error((s, b), 413, "payload_too_large");
    let stdin_ok = json!({"code": "print(len(input()))", "stdin": "s".repeat(1000)});
    let (s, _, b) = post(&ex, &stdin_ok).await;
    assert_eq!((s.as_u16(), b["stdout"].clone()), (200, json!("1000\n")));
    let (s, _, b) = post(&ex, &json!({"code": "", "stdin": "s".repeat(1001)})).await;
    assert_error((s, b), 413, "payload_too_large");
    let padded = format!(r#"{{"code": ""{}}}"#, " ".repeat(6000));
    assert_error(
        post_raw(&ex, json, padded.into_bytes()).await,
        413,
        "payload_too_large",
    );

    // Unknown routes are JSON errors too.
    let r = reqwest::get(ex.url("/nope")).await.unwrap();
    assert_error((r.status(), r.json().await.unwrap()), 404, "not_found");

    // Every rejection is counted by its code.
    let metrics = reqwest::get(ex.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("executor_rejected_total{reason=\"invalid_limits\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("executor_rejected_total{reason=\"payload_too_large\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn overload_is_429_with_retry_after_and_the_queue_is_honoured() {
    let ex = ExecutorProcess::start(&[("EXECUTOR_CONCURRENCY", "1"), ("EXECUTOR_QUEUE_DEPTH", "1")]);
    ex.wait_ready().await;
    let slow = json!({"code": "import time\ntime.sleep(1.0)\nprint('slow')"});
    let first = tokio::spawn({
        let url = ex.url("/execute");
        let slow = slow.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&slow)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // One slot busy, one queue place: the second waits, the third is refused.
    let second = tokio::spawn({
        let url = ex.url("/execute");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&json!({"code": "print('queued')"}))
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = reqwest::Client::new()
        .post(ex.url("/execute"))
        .json(&json!({"code": "print('third')"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");

    let metrics = reqwest::get(ex.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("executor_inflight_executions 1"), "{metrics}");
    assert!(metrics.contains("executor_queue_depth 1"), "{metrics}");
    assert!(metrics.contains("executor_concurrency_limit 1"), "{metrics}");

    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(second.await.unwrap()["stdout"], "queued\n");
    let (status, _, body) = post(&ex, &json!({"code": "print('after')"})).await;
    assert_eq!((status.as_u16(), body["stdout"].clone()), (200, json!("after\n")));
}

#[tokio::test]
async fn sixty_four_hostile_snippets_at_once_over_http() {
    let ex = ExecutorProcess::start(&[("EXECUTOR_QUEUE_DEPTH", "64")]);
    ex.wait_ready().await;
    let cases = [
        ("while True: pass", "timeout"),
        ("import time; time.sleep(10**6)", "timeout"),
        ("x = bytearray(2**30)", "memory_exceeded"),
        ("while True: print('x' * 4096)", "timeout"),
        ("print(open('/etc/passwd').read())", "error"),
        ("print('fine')", "ok"),
    ];
    let client = reqwest::Client::new();
    let runs = (0..64).map(|i| {
        let (code, expected) = cases[i % cases.len()];
        let (client, url) = (client.clone(), ex.url("/execute"));
        async move {
            let body = json!({"code": code, "limits": {"timeout_ms": 250}});
            let r = client.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["status"], expected, "{code}: {v}");
        }
    });
    futures::future::join_all(runs).await;
    let (status, _, body) = post(&ex, &json!({"code": "print('still here')"})).await;
    assert_eq!(
        (status.as_u16(), body["stdout"].clone()),
        (200, json!("still here\n"))
    );
    let metrics = reqwest::get(ex.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("executor_executions_total{status=\"timeout\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("executor_inflight_executions 0"), "{metrics}");
}

#[tokio::test]
async fn not_ready_until_the_runtime_is_loaded() {
    // The guest path is a FIFO: loading blocks until the test feeds it.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("guest.wasm");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let ex = ExecutorProcess::start(&[("EXECUTOR_GUEST_WASM", fifo.to_str().unwrap())]);
    let r = reqwest::get(ex.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(reqwest::get(ex.url("/healthz")).await.unwrap().status(), 200);
    let (status, _, body) = post(&ex, &json!({"code": "print(1)"})).await;
    assert_error((status, body), 503, "not_ready");

    let wasm = std::fs::read(guest_wasm()).unwrap();
    let fifo_path = fifo.clone();
    std::thread::spawn(move || std::fs::write(fifo_path, wasm).unwrap());
    ex.wait_ready().await;
    let (status, _, body) = post(&ex, &json!({"code": "print(1)"})).await;
    assert_eq!((status.as_u16(), body["stdout"].clone()), (200, json!("1\n")));
}

#[tokio::test]
async fn sigterm_drains_in_flight_work_then_exits() {
    let ex = ExecutorProcess::start(&[]);
    ex.wait_ready().await;
    let client = reqwest::Client::new();
    let in_flight = tokio::spawn({
        let (client, url) = (client.clone(), ex.url("/execute"));
        async move {
            let body = json!({"code": "import time\ntime.sleep(1.5)\nprint('finished')"});
            let r = client.post(url).json(&body).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    ex.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New work is refused (503 while the listener drains, or no connection).
    if let Ok(r) = client.get(ex.url("/readyz")).send().await {
        assert_eq!(r.status(), 503);
    }
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(
        (status.as_u16(), body["stdout"].clone()),
        (200, json!("finished\n"))
    );
    let exit = tokio::task::spawn_blocking(move || {
        let mut ex = ex;
        ex.child.wait().unwrap()
    })
    .await
    .unwrap();
    assert!(exit.success(), "{exit:?}");
}
