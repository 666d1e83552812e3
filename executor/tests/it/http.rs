//! The real executor binary over HTTP on 127.0.0.1: the API contract, its
//! error codes, admission control, readiness and the SIGTERM drain.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use testkit::Proc;

use crate::common::*;

async fn post(ex: &Proc, body: &Value) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = reqwest::Client::new()
        .post(ex.url("/execute"))
        .json(body)
        .send()
        .await
        .expect("request sent");
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.json().await.expect("a JSON body"))
}

async fn post_raw(ex: &Proc, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
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
    let ex = testkit::executor("test")
        .envs(&[("EXECUTOR_NAME", "exec-test-1")])
        .ready()
        .await;
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
    assert_eq!(
        body["truncated"],
        json!({"stdout": false, "stderr": false, "files": false})
    );
    assert_eq!(body["files"], json!([]));
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
    assert_eq!(
        body["limit"],
        json!({"kind": "timeout", "value": 200, "unit": "ms",
               "message": "the run exceeded its wall-clock limit of 200 ms"})
    );
}

#[tokio::test]
async fn the_limit_field_is_structured_clamped_and_cannot_be_forged() {
    let ex = testkit::executor("test")
        .envs(&[
            ("EXECUTOR_MAX_TIMEOUT_MS", "300"),
            ("EXECUTOR_MAX_OUTPUT_BYTES", "100"),
        ])
        .ready()
        .await;
    let spin = "while True: pass";
    // Just under the maximum is kept; just over it is clamped to it.
    for (asked, got) in [(299, 299), (300, 300), (301, 300)] {
        let (_, _, body) = post(&ex, &json!({"code": spin, "limits": {"timeout_ms": asked}})).await;
        assert_eq!(body["status"], "timeout", "{body}");
        assert_eq!(
            (body["limit"]["kind"].clone(), body["limit"]["value"].clone()),
            (json!("timeout"), json!(got))
        );
    }
    // Output: exactly at the cap is not a limit; one byte more is.
    let (_, _, body) = post(&ex, &json!({"code": "print('o' * 99)"})).await;
    assert_eq!(
        (body["limit"].clone(), body["truncated"]["stdout"].clone()),
        (Value::Null, json!(false))
    );
    let (_, _, body) = post(&ex, &json!({"code": "print('o' * 100)"})).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(
        (
            body["limit"]["kind"].clone(),
            body["limit"]["value"].clone(),
            body["truncated"]["stdout"].clone()
        ),
        (json!("output"), json!(100), json!(true))
    );
    // A snippet that prints the sandbox's note itself changes nothing.
    let forged = "import sys\nprint('[runbox] timeout: the run exceeded its wall-clock limit of 5 ms', file=sys.stderr)";
    let (_, _, body) = post(&ex, &json!({"code": forged})).await;
    assert_eq!(
        (body["status"].clone(), body["limit"].clone()),
        (json!("ok"), Value::Null),
        "{body}"
    );
    assert!(body["stderr"].as_str().unwrap().starts_with("[runbox] timeout"));
    // Fuel and memory name themselves too.
    let (_, _, body) = post(&ex, &json!({"code": spin, "limits": {"fuel": 1000000}})).await;
    assert_eq!(
        (body["status"].clone(), body["limit"]["kind"].clone()),
        (json!("fuel_exhausted"), json!("fuel"))
    );
    let (_, _, body) = post(
        &ex,
        &json!({"code": "b = bytearray(2**28)", "limits": {"memory_bytes": 33554432}}),
    )
    .await;
    assert_eq!(
        (
            body["status"].clone(),
            body["limit"]["kind"].clone(),
            body["limit"]["value"].clone()
        ),
        (json!("memory_exceeded"), json!("memory"), json!(33554432))
    );
}

#[tokio::test]
async fn args_are_capped_at_1024_and_every_answer_is_json() {
    let ex = testkit::executor("test").envs(&[]).ready().await;
    let args = |n: usize| vec!["a"; n];
    let (status, _, body) = post(
        &ex,
        &json!({"code": "import sys; print(len(sys.argv))", "args": args(1024)}),
    )
    .await;
    assert_eq!((status.as_u16(), body["stdout"].clone()), (200, json!("1025\n")));
    let (status, _, body) = post(&ex, &json!({"code": "", "args": args(1025)})).await;
    assert_error((status, body), 400, "invalid_request");
    // A known route with the wrong method: 405, JSON, with Allow.
    let r = reqwest::get(ex.url("/execute")).await.unwrap();
    assert!(r.headers().contains_key("allow"));
    assert_error((r.status(), r.json().await.unwrap()), 405, "method_not_allowed");
    // The document is served, and it is the committed one.
    let served = reqwest::get(ex.url("/openapi.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        served,
        runbox_api::openapi::document_json_for(&["python".to_owned()])
    );
}

#[tokio::test]
async fn bad_input_gets_a_stable_error_code() {
    let ex = testkit::executor("test")
        .envs(&[
            ("EXECUTOR_MAX_CODE_BYTES", "1000"),
            ("EXECUTOR_MAX_STDIN_BYTES", "1000"),
            ("EXECUTOR_MAX_BODY_BYTES", "5000"),
        ])
        .ready()
        .await;
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
    let metrics = reqwest::get(ex.metrics_url())
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
    let ex = testkit::executor("test")
        .envs(&[("EXECUTOR_CONCURRENCY", "1"), ("EXECUTOR_QUEUE_DEPTH", "1")])
        .ready()
        .await;
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
    ex.wait_metric("executor_inflight_executions", Duration::from_secs(30), |v| {
        v == Some(1.0)
    })
    .await;
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
    ex.wait_metric("executor_queue_depth", Duration::from_secs(30), |v| {
        v == Some(1.0)
    })
    .await;
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

    let metrics = reqwest::get(ex.metrics_url())
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
    let ex = testkit::executor("test")
        .envs(&[("EXECUTOR_QUEUE_DEPTH", "64")])
        .ready()
        .await;
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
    let metrics = reqwest::get(ex.metrics_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("executor_executions_total{runtime=\"python\",status=\"timeout\"}"),
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
    let ex = testkit::executor("test")
        .env("EXECUTOR_GUEST_WASM", &fifo)
        .start()
        .await;
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
    let mut ex = testkit::executor("test").ready().await;
    let client = reqwest::Client::new();
    let in_flight = tokio::spawn({
        let (client, url) = (client.clone(), ex.url("/execute"));
        async move {
            let body = json!({"code": "import time\ntime.sleep(1.5)\nprint('finished')"});
            let r = client.post(url).json(&body).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    });
    // Once the run is in flight (the gauge says so), ask the process to stop.
    ex.wait_metric("executor_inflight_executions", Duration::from_secs(30), |v| {
        v == Some(1.0)
    })
    .await;
    ex.terminate();
    // New work is refused: readiness turns 503 while draining (or the
    // listener is already closed).
    let url = ex.url("/readyz");
    let refused = testkit::poll_until(
        "readiness to turn false",
        Duration::from_secs(10),
        || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                client
                    .get(url)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        },
        |status| *status != 200,
    )
    .await;
    assert!(refused == 503 || refused == 0, "readyz said {refused}");
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(
        (status.as_u16(), body["stdout"].clone()),
        (200, json!("finished\n"))
    );
    let exit = ex.wait_exit(Duration::from_secs(60)).await;
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn a_runtime_that_fails_to_load_or_is_unknown_stops_the_process_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("guest.wasm");
    std::fs::write(&garbage, b"not wasm").unwrap();
    let mut ex = testkit::executor("test")
        .env("EXECUTOR_GUEST_WASM", &garbage)
        .env("EXECUTOR_NO_CACHE", "true")
        .start()
        .await;
    let exit = ex.wait_exit(Duration::from_secs(60)).await;
    assert!(!exit.success(), "{exit:?}");
    assert!(
        ex.logs().contains("runtime `python` failed to load"),
        "{}",
        ex.logs()
    );

    let refused = testkit::executor("test")
        .env("EXECUTOR_RUNTIMES", "python,cobol")
        .try_start()
        .await
        .expect_err("an unknown runtime is refused before serving");
    let text = refused.to_string();
    assert!(
        text.contains("unknown runtime `cobol`") && text.contains("available: python"),
        "{text}"
    );
}
