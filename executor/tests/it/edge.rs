//! The executor's HTTP edge over a real process: a stalled upload holds no
//! execution slot or parse permit and ends with 408 at the body deadline; a
//! connection with no request is closed at the idle timeout; `/metrics` is
//! served on its own listener and not on the API's.

use std::time::Duration;

use runbox_api::{ErrorCode, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WITHIN: Duration = Duration::from_secs(30);

async fn read_to_end(conn: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WITHIN, conn.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn stalled_uploads_hold_no_slot_and_idle_connections_are_closed() {
    let ex = testkit::executor("edge")
        .envs(&[
            ("EXECUTOR_CONCURRENCY", "1"),
            ("EXECUTOR_QUEUE_DEPTH", "0"),
            ("EXECUTOR_BODY_TIMEOUT_MS", "1500"),
            ("EXECUTOR_IDLE_TIMEOUT_MS", "1500"),
        ])
        .ready()
        .await;
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut conn = TcpStream::connect(ex.addr()).await.unwrap();
        conn.write_all(
            b"POST /execute HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"code\": ",
        )
        .await
        .unwrap();
        stalled.push(conn);
    }
    ex.wait_metric("executor_buffered_bytes", WITHIN, |v| v == Some(4.0 * 9.0))
        .await;
    // One slot, no queue: a stalled upload holding it would make this 429.
    let result = ex.run("print('hi')").await;
    assert_eq!((result.status, result.stdout.as_str()), (Status::Ok, "hi\n"));
    for conn in &mut stalled {
        let answer = read_to_end(conn).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(ErrorCode::RequestTimeout.as_str()), "{answer}");
    }
    assert_eq!(ex.metric("executor_body_timeouts_total").await, Some(4.0));

    let mut idle = TcpStream::connect(ex.addr()).await.unwrap();
    assert_eq!(read_to_end(&mut idle).await, "", "closed without a word");
    ex.wait_metric(
        "executor_connections_closed_total{reason=\"idle\"}",
        WITHIN,
        |v| v.is_some_and(|v| v >= 1.0),
    )
    .await;

    let api_metrics = ex.get("/metrics").await;
    api_metrics.expect_error(404, ErrorCode::NotFound);
    assert!(ex.metrics().await.value("executor_connections_open").is_some());
}
