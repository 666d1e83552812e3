//! The gateway in front of real executor processes.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

#[tokio::test]
async fn round_robin_is_exact_over_three_real_executors() {
    let execs: Vec<Proc> = (0..3)
        .map(|i| executor(&format!("exec-{i}"), "127.0.0.1:0", &[]))
        .collect();
    let list = execs.iter().map(Proc::base).collect::<Vec<_>>().join(",");
    let gw = gateway(&[("GATEWAY_EXECUTORS", &list), ("GATEWAY_RATE_LIMIT_RPS", "0")]);
    wait_backends(&gw, 3).await;
    let client = reqwest::Client::new();
    let mut names = Vec::new();
    for i in 0..30 {
        let (status, executor, body) = execute(&client, &gw, &format!("print({i})")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["stdout"], format!("{i}\n"));
        let executor = executor.expect("x-runbox-executor");
        let index = execs
            .iter()
            .position(|p| p.base() == executor)
            .expect("a known executor");
        assert_eq!(body["executor"], format!("exec-{index}"));
        names.push(executor);
    }
    let counts = tally(names);
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n == 10), "{counts:?}");
}

#[tokio::test]
async fn a_killed_executor_costs_only_its_in_flight_requests_and_comes_back() {
    let mut execs: Vec<Proc> = (0..3)
        .map(|i| executor(&format!("exec-{i}"), "127.0.0.1:0", &[]))
        .collect();
    let list = execs.iter().map(Proc::base).collect::<Vec<_>>().join(",");
    let gw = gateway(&[("GATEWAY_EXECUTORS", &list), ("GATEWAY_RATE_LIMIT_RPS", "0")]);
    wait_backends(&gw, 3).await;
    let victim_addr = execs[1].addr;
    let victim = format!("http://{victim_addr}");

    // A bounded burst from 6 workers; the victim is SIGKILLed mid-way.
    let client = reqwest::Client::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (client, url, done) = (client.clone(), gw.url("/execute"), done_tx.clone());
            tokio::spawn(async move {
                let mut results = Vec::new();
                for _ in 0..15 {
                    let r = client
                        .post(&url)
                        .json(&json!({"code": "import time\ntime.sleep(0.03)\nprint('ok')"}))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap();
                    let _ = done.send(());
                    results.push((status, body));
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
    let failed: Vec<_> = results.iter().filter(|(s, _)| *s != 200).collect();
    for (status, body) in &failed {
        assert_eq!(*status, 502, "{body}");
        assert!(
            ["upstream_failed", "upstream_unreachable"].contains(&body["error"]["code"].as_str().unwrap()),
            "{body}"
        );
    }
    // Only requests in flight on the victim at the kill may fail: at most one per worker.
    assert!(failed.len() <= 6, "{} failed: {failed:?}", failed.len());
    for (_, body) in results.iter().filter(|(s, _)| *s == 200) {
        assert_eq!(body["stdout"], "ok\n");
    }

    // The dead one is ejected: everything now goes to the two others.
    wait_backends(&gw, 2).await;
    let mut names = Vec::new();
    for _ in 0..10 {
        let (status, executor, _) = execute(&client, &gw, "print(1)").await;
        assert_eq!(status, 200);
        names.push(executor.unwrap());
    }
    assert!(!names.contains(&victim), "{names:?}");

    // Restarted on the same address, it is re-admitted.
    execs[1] = executor("exec-1-again", &victim_addr.to_string(), &[]);
    wait_backends(&gw, 3).await;
    let mut names = Vec::new();
    for _ in 0..6 {
        names.push(execute(&client, &gw, "print(1)").await.1.unwrap());
    }
    assert!(names.contains(&victim), "{names:?}");
    let text = reqwest::get(gw.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("gateway_requests_total{code=\"200\"}"), "{text}");
}

/// Accepts connections; answers `/readyz` with 200 and never answers anything else.
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
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_hanging_executor_costs_only_the_timeout() {
    let hang = hanging_executor().await;
    let real = executor("real", "127.0.0.1:0", &[]);
    let list = format!("http://{hang},{}", real.base());
    let gw = gateway(&[
        ("GATEWAY_EXECUTORS", &list),
        ("GATEWAY_REQUEST_TIMEOUT_MS", "500"),
        ("GATEWAY_RATE_LIMIT_RPS", "0"),
    ]);
    wait_backends(&gw, 2).await;
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let calls = (0..4).map(|_| execute(&client, &gw, "print('x')"));
    let results = futures::future::join_all(calls).await;
    let timeouts = results.iter().filter(|(s, _, _)| *s == 504).count();
    let oks = results.iter().filter(|(s, _, _)| *s == 200).count();
    assert_eq!((timeouts, oks), (2, 2), "{results:?}");
    for (status, _, body) in &results {
        if *status == 504 {
            assert_eq!(body["error"]["code"], "upstream_timeout");
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The gateway itself stayed responsive.
    let r = reqwest::get(gw.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn no_ready_executor_is_503_with_retry_after() {
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = gateway(&[("GATEWAY_EXECUTORS", &format!("http://{closed}"))]);
    let r = reqwest::Client::new()
        .post(gw.url("/execute"))
        .json(&json!({"code": "print(1)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_executors");
    assert_eq!(reqwest::get(gw.url("/readyz")).await.unwrap().status(), 503);
}

#[tokio::test]
async fn executor_429_is_tried_elsewhere_then_passed_through() {
    let busy = executor(
        "busy",
        "127.0.0.1:0",
        &[("EXECUTOR_CONCURRENCY", "1"), ("EXECUTOR_QUEUE_DEPTH", "0")],
    );
    let gw = gateway(&[
        ("GATEWAY_EXECUTORS", &busy.base()),
        ("GATEWAY_RATE_LIMIT_RPS", "0"),
    ]);
    wait_backends(&gw, 1).await;
    let client = reqwest::Client::new();
    let slow = tokio::spawn({
        let (client, url) = (client.clone(), gw.url("/execute"));
        async move {
            client
                .post(url)
                .json(&json!({"code": "import time; time.sleep(1)"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = client
        .post(gw.url("/execute"))
        .json(&json!({"code": "print(1)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["x-runbox-executor"], busy.base());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!(slow.await.unwrap(), 200);

    // With a second executor, the busy answer is retried there instead.
    let spare = executor("spare", "127.0.0.1:0", &[]);
    let gw = gateway(&[
        ("GATEWAY_EXECUTORS", &format!("{},{}", busy.base(), spare.base())),
        ("GATEWAY_RATE_LIMIT_RPS", "0"),
    ]);
    wait_backends(&gw, 2).await;
    let hog = tokio::spawn({
        let (client, url) = (client.clone(), busy.url("/execute"));
        async move {
            client
                .post(url)
                .json(&json!({"code": "import time; time.sleep(1.5)"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..4 {
        let (status, executor, _) = execute(&client, &gw, "print(2)").await;
        assert_eq!((status, executor.as_deref()), (200, Some(spare.base().as_str())));
    }
    assert_eq!(hog.await.unwrap(), 200);
    let text = reqwest::get(gw.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric(&text, "gateway_retries_total").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn limits_at_the_door() {
    let exec = executor("e", "127.0.0.1:0", &[]);
    let gw = gateway(&[
        ("GATEWAY_EXECUTORS", &exec.base()),
        ("GATEWAY_MAX_BODY_BYTES", "200"),
        ("GATEWAY_RATE_LIMIT_RPS", "1"),
        ("GATEWAY_RATE_LIMIT_BURST", "3"),
        ("GATEWAY_CORS_ORIGINS", "http://playground.example"),
    ]);
    wait_backends(&gw, 1).await;
    let client = reqwest::Client::new();
    // Body cap: obeyed, then violated.
    let (status, _, _) = execute(&client, &gw, &"#".repeat(100)).await;
    assert_eq!(status, 200);
    let (status, _, body) = execute(&client, &gw, &"#".repeat(300)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    // Rate: those two took 2 of the burst of 3; one more passes, then the
    // client is refused with a wait (refill is 1/s, far slower than this loop).
    let mut statuses = Vec::new();
    let r = loop {
        let r = client
            .post(gw.url("/execute"))
            .json(&json!({"code": ""}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 || statuses.len() == 3 {
            break r;
        }
    };
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert_eq!(r.status(), 429, "{statuses:?}");
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // CORS for the configured origin only.
    let r = client
        .request(reqwest::Method::OPTIONS, gw.url("/execute"))
        .header("origin", "http://playground.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://playground.example"
    );
    let r = client
        .request(reqwest::Method::OPTIONS, gw.url("/execute"))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn concurrency_cap_sheds_with_429() {
    let exec = executor("e", "127.0.0.1:0", &[]);
    let gw = gateway(&[
        ("GATEWAY_EXECUTORS", &exec.base()),
        ("GATEWAY_MAX_CONCURRENCY", "1"),
        ("GATEWAY_RATE_LIMIT_RPS", "0"),
    ]);
    wait_backends(&gw, 1).await;
    let client = reqwest::Client::new();
    let slow = tokio::spawn({
        let (client, url) = (client.clone(), gw.url("/execute"));
        async move {
            client
                .post(url)
                .json(&json!({"code": "import time; time.sleep(0.8)"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (status, _, body) = execute(&client, &gw, "print(1)").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("overloaded"))
    );
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(execute(&client, &gw, "print(1)").await.0, 200);
}

#[tokio::test]
async fn embedded_mode_serves_api_and_playground_from_one_process() {
    let gw = gateway(&[("EXECUTOR_NAME", "embedded-exec")]);
    gw.wait_ready().await;
    let client = reqwest::Client::new();
    let r = client
        .post(gw.url("/execute"))
        .header("x-request-id", "my-id")
        .json(&json!({"code": "print(6*7)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-runbox-executor"], "embedded-exec");
    assert_eq!(r.headers()["x-request-id"], "my-id");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["stdout"].as_str(), body["id"].as_str()),
        (Some("42\n"), Some("my-id"))
    );
    // The executor's own errors pass through unchanged.
    let r = client
        .post(gw.url("/execute"))
        .json(&json!({"code": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_request"
    );
    let runtimes: Value = reqwest::get(gw.url("/runtimes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runtimes["runtimes"][0]["name"], "python");
    let page = reqwest::get(gw.url("/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("runbox"));
    let r = reqwest::get(gw.url("/no-such-thing")).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "not_found");
    let text = reqwest::get(gw.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("executor_executions_total{status=\"ok\"} 1"),
        "{text}"
    );
    assert!(text.contains("gateway_requests_total{code=\"200\"}"), "{text}");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests() {
    let gw = gateway(&[]);
    gw.wait_ready().await;
    let in_flight = tokio::spawn({
        let url = gw.url("/execute");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&json!({"code": "import time\ntime.sleep(1)\nprint('done')"}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.terminate();
    let (status, body) = in_flight.await.unwrap();
    assert_eq!((status, body["stdout"].as_str()), (200, Some("done\n")));
    let exit = tokio::task::spawn_blocking(move || {
        let mut gw = gw;
        gw.child.wait().unwrap()
    })
    .await
    .unwrap();
    assert!(exit.success());
}

#[tokio::test]
async fn connect_failures_are_retried_elsewhere_and_eject_the_executor() {
    let mut a = executor("a", "127.0.0.1:0", &[]);
    let b = executor("b", "127.0.0.1:0", &[]);
    a.wait_ready().await;
    b.wait_ready().await;
    // Probes are slow here, so only the passive path can notice a dead executor.
    let gw = gateway(&[
        ("GATEWAY_EXECUTORS", &format!("{},{}", a.base(), b.base())),
        ("GATEWAY_RATE_LIMIT_RPS", "0"),
        ("GATEWAY_PROBE_INTERVAL_MS", "60000"),
    ]);
    wait_backends(&gw, 2).await;
    a.kill();
    let client = reqwest::Client::new();
    for _ in 0..4 {
        let (status, executor, body) = execute(&client, &gw, "print('still')").await;
        assert_eq!(
            (status, executor.as_deref()),
            (200, Some(b.base().as_str())),
            "{body}"
        );
    }
    let text = reqwest::get(gw.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&text, "gateway_retries_total"), Some(1.0), "{text}");
    assert_eq!(
        ready_backends(&gw).await,
        1.0,
        "the dead executor is ejected at once"
    );

    // With every executor gone, the answer is a clean 502.
    drop(b);
    let (status, _, body) = execute(&client, &gw, "print(1)").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream_unreachable"))
    );
    let (status, _, body) = execute(&client, &gw, "print(1)").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("no_executors"))
    );
}
