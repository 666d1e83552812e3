//! Fairness between clients, against the real embedded gateway with its
//! default settings: one client floods long runs, and another client, from
//! another address, keeps being served. Clients are told apart by source
//! address (`testkit::http::client_from`: on Linux all of 127.0.0.0/8 is
//! loopback). Ordering is by the flood's own replies and the gateway's
//! gauges, never by sleeping.
#![cfg(feature = "embedded")]

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU64;
use std::time::Duration;

use runbox_api::{ErrorCode, ExecuteRequest, LimitRequest, Status};
use testkit::Reply;
use tokio::sync::mpsc;

const WITHIN: Duration = Duration::from_secs(30);
/// Long runs the flooder sends at once, first: more than the embedded
/// executor's slots and queue (5 × its concurrency, the CPU count), so that
/// without per-client limits the flood fills them all; under the gateway's
/// per-client connection cap.
fn flood_size() -> usize {
    (6 * cpus()).min(48)
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
/// Long runs it sends again beside each of the other client's requests.
const WAVE: usize = 4;
/// Requests of the other client, one after another, during the flood.
const SERVED: usize = 6;

const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// Sends `n` copies of `request` at once from `client`; each reply goes to `replies`.
fn flood(
    client: &reqwest::Client,
    base: &str,
    request: &ExecuteRequest,
    n: usize,
    replies: &mpsc::UnboundedSender<Reply>,
) {
    for _ in 0..n {
        let (client, base, request, replies) =
            (client.clone(), base.to_owned(), request.clone(), replies.clone());
        tokio::spawn(async move {
            let reply = testkit::http::execute(&client, &base, &request)
                .await
                .expect("the gateway answers the flood");
            let _ = replies.send(reply);
        });
    }
}

#[tokio::test]
async fn a_client_flooding_long_runs_does_not_starve_another_client() {
    // Defaults: a client may have half the embedded executor's slots in
    // flight (1 of 2 on a 2-CPU machine), so the other half is left for others.
    let gw = testkit::gateway().ready().await;
    let base = gw.base();
    let (flooder, other) = (
        testkit::http::client_from(FLOODER),
        testkit::http::client_from(OTHER),
    );
    let long = ExecuteRequest {
        limits: Some(LimitRequest {
            timeout_ms: NonZeroU64::new(5_000),
            ..LimitRequest::default()
        }),
        ..ExecuteRequest::code("import time\ntime.sleep(3)\nprint('slept')")
    };
    let hi = ExecuteRequest::code("print('hi')");

    let (tx, mut replies) = mpsc::unbounded_channel();
    let first = flood_size();
    flood(&flooder, &base, &long, first, &tx);
    // The flood is on: some of its runs execute, and it has been answered
    // at least once already (refused: a run takes 3 s).
    gw.wait_metric("executor_inflight_executions", WITHIN, |v| {
        v.is_some_and(|v| v >= 1.0)
    })
    .await;
    let mut flood_replies = vec![replies.recv().await.expect("a reply to the flood")];

    let mut sent = first;
    for i in 0..SERVED {
        // The flooder keeps at it beside every request of the other client.
        flood(&flooder, &base, &long, WAVE, &tx);
        sent += WAVE;
        let reply = testkit::http::execute(&other, &base, &hi)
            .await
            .expect("the gateway answers");
        assert_eq!(
            reply.status,
            200,
            "request {i} of the other client: {}",
            reply.text()
        );
        let result = reply.response();
        assert_eq!((result.status, result.stdout.as_str()), (Status::Ok, "hi\n"));
    }
    drop(tx);
    while let Some(reply) = replies.recv().await {
        flood_replies.push(reply);
    }
    assert_eq!(flood_replies.len(), sent);

    let (mut ran, mut refused) = (0, 0);
    for reply in &flood_replies {
        if reply.status == 200 {
            let result = reply.response();
            assert_eq!((result.status, result.stdout.as_str()), (Status::Ok, "slept\n"));
            ran += 1;
            continue;
        }
        reply.expect_error(429, ErrorCode::RateLimited);
        let retry_after: u64 = reply
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("a 429 with a Retry-After: {reply:?}"));
        assert!(retry_after >= 1);
        refused += 1;
    }
    assert!(ran >= 1, "the flooder is served too, within its share");
    assert!(refused >= first - cpus(), "{refused} of {sent} refused");
    // Every refusal was one of the per-client limits', and the other client got none.
    let metrics = gw.metrics().await;
    let per_client = ["inflight", "budget"].map(|l| {
        metrics
            .value(&format!("gateway_client_refusals_total{{limit=\"{l}\"}}"))
            .unwrap_or(0.0)
    });
    assert_eq!(
        per_client.iter().sum::<f64>(),
        refused as f64,
        "{}",
        metrics.text()
    );
    assert_eq!(
        metrics.value("executor_executions_total{status=\"ok\"}"),
        Some((ran + SERVED) as f64),
        "{}",
        metrics.text()
    );
}
