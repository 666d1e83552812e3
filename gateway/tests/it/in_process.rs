//! The gateway in-process, over stand-in executors on 127.0.0.1:0: the
//! router with `oneshot`, or `gateway::run` where a real client connection
//! matters. Every layer, error and retry, without an executor process.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use gateway::balance::Strategy;
use gateway::discover::{Backend, BackendSet, Discovery, Target, parse_base_url};
use gateway::{Gateway, Options};
use runbox_api::headers::{EXECUTOR, REQUEST_ID};
use runbox_api::{ErrorBody, ErrorCode, ExecuteResponse, RuntimeRef, Status, Truncated};
use testkit::Reply;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, mpsc, watch};
use tower::ServiceExt;

const MAX_BODY: usize = 4096;

fn options() -> Options {
    Options {
        balance: Strategy::RoundRobin,
        max_body_bytes: MAX_BODY,
        max_concurrency: 64,
        rate_limit: None,
        trusted_proxies: Vec::new(),
        fairness: gateway::door::FairnessConfig::off(),
        request_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(1),
        cors_origins: Vec::new(),
        edge: runbox_api::server::EdgeConfig::default(),
    }
}

/// A fixed set of backends; remembers which ones the gateway could not reach.
struct Fixed {
    tx: watch::Sender<BackendSet>,
    connect_failed: Mutex<Vec<String>>,
}

impl Fixed {
    fn new(backends: Vec<Arc<Backend>>) -> Arc<Fixed> {
        let set = BackendSet {
            ready: backends.into(),
            unready: 0,
        };
        Arc::new(Fixed {
            tx: watch::channel(set).0,
            connect_failed: Mutex::new(Vec::new()),
        })
    }
}

impl Discovery for Fixed {
    fn subscribe(&self) -> watch::Receiver<BackendSet> {
        self.tx.subscribe()
    }

    fn connect_failed(&self, backend: &Backend) {
        self.connect_failed.lock().unwrap().push(backend.key.clone());
    }
}

fn gateway_over(options: Options, backends: &[&Arc<Backend>]) -> (Gateway, Arc<Fixed>) {
    let discovery = Fixed::new(backends.iter().map(|b| Arc::clone(b)).collect());
    let gw = Gateway::new(options, Arc::clone(&discovery) as Arc<dyn Discovery>).unwrap();
    (gw, discovery)
}

/// How a stand-in executor answers `POST /execute`.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// 200 with a run's result.
    Ok,
    /// 429 `overloaded` with `Retry-After: 1`, as a full executor does.
    Busy,
    /// 400 `invalid_request` in the contract's shape.
    Invalid,
    /// 500 with an HTML page: not the contract.
    Junk,
    /// Holds the request until the test adds a permit to `release`, then 200.
    Hold,
}

#[derive(Clone)]
struct StandInState {
    name: String,
    answer: Answer,
    arrived: mpsc::UnboundedSender<HeaderMap>,
    release: Arc<Semaphore>,
}

/// A stand-in executor: every request's headers arrive on `arrived`.
struct StandIn {
    backend: Arc<Backend>,
    arrived: mpsc::UnboundedReceiver<HeaderMap>,
    release: Arc<Semaphore>,
}

impl StandIn {
    async fn start(name: &str, answer: Answer) -> StandIn {
        let (tx, arrived) = mpsc::unbounded_channel();
        let release = Arc::new(Semaphore::new(0));
        let state = StandInState {
            name: name.to_owned(),
            answer,
            arrived: tx,
            release: Arc::clone(&release),
        };
        let app = axum::Router::new()
            .route("/execute", axum::routing::post(stand_in))
            .route("/runtimes", axum::routing::get(stand_in))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let uri = parse_base_url(&format!("http://{addr}")).unwrap();
        StandIn {
            backend: Arc::new(Backend::new(addr.to_string(), name, Target::Http(uri))),
            arrived,
            release,
        }
    }

    /// The headers of the next request that reached it.
    async fn next_arrival(&mut self) -> HeaderMap {
        tokio::time::timeout(Duration::from_secs(10), self.arrived.recv())
            .await
            .expect("a request reached the stand-in in time")
            .expect("the stand-in runs")
    }
}

async fn stand_in(State(s): State<StandInState>, headers: HeaderMap) -> Response {
    let id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let _ = s.arrived.send(headers);
    let error = |status: StatusCode, code: &str, message: &str| {
        let body = serde_json::json!({"error": {"code": code, "message": message}, "id": id});
        (status, [("retry-after", "1")], axum::Json(body)).into_response()
    };
    match s.answer {
        Answer::Busy => return error(StatusCode::TOO_MANY_REQUESTS, "overloaded", "all slots busy"),
        Answer::Invalid => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "`code`: expected a string",
            );
        }
        Answer::Junk => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [("content-type", "text/html")],
                "<h1>oops</h1>",
            )
                .into_response();
        }
        Answer::Hold => drop(s.release.acquire().await.unwrap()),
        Answer::Ok => {}
    }
    axum::Json(ExecuteResponse {
        id,
        status: Status::Ok,
        exit_code: Some(0),
        stdout: "hi\n".into(),
        stderr: String::new(),
        truncated: Truncated::default(),
        files: Vec::new(),
        duration_ms: 1.0,
        fuel_used: Some(1),
        limit: None,
        runtime: RuntimeRef {
            name: "python".into(),
            version: "3.14.0".into(),
        },
        executor: s.name.clone(),
    })
    .into_response()
}

fn execute(body: &str) -> Request<Body> {
    Request::post("/execute")
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn from(ip: [u8; 4], mut request: Request<Body>) -> Request<Body> {
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
    request
}

async fn send(gw: &Gateway, request: Request<Body>) -> Reply {
    reply(gateway::router(gw.clone()).oneshot(request).await.unwrap()).await
}

/// `GET /metrics` from the metrics router (a listener of its own in `gateway::run`).
async fn metrics(gw: &Gateway) -> Reply {
    let request = get("/metrics");
    reply(
        gateway::metrics_router(gw.clone())
            .oneshot(request)
            .await
            .unwrap(),
    )
    .await
}

async fn reply(response: axum::response::Response) -> Reply {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 1 << 24).await.unwrap();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Asserts the error and that its id is the response's `x-request-id`.
#[track_caller]
fn expect_error(reply: &Reply, status: u16, code: ErrorCode) -> ErrorBody {
    let body = reply.expect_error(status, code);
    let id = reply.request_id().expect("x-request-id on every response");
    assert_eq!(body.id.as_deref(), Some(id), "{}", reply.text());
    body
}

#[tokio::test]
async fn every_error_is_the_json_error_shape_with_a_stable_code() {
    let (gw, _) = gateway_over(options(), &[]);
    expect_error(&send(&gw, execute("{}")).await, 503, ErrorCode::NoExecutors);
    let r = send(&gw, Request::post("/nope").body(Body::empty()).unwrap()).await;
    let e = expect_error(&r, 404, ErrorCode::NotFound);
    assert!(e.error.message.contains("/nope"), "{}", e.error.message);
    expect_error(
        &send(&gw, get("/no-such-file.js")).await,
        404,
        ErrorCode::NotFound,
    );
    expect_error(
        &send(&gw, get("/execute")).await,
        405,
        ErrorCode::MethodNotAllowed,
    );
    let delete = Request::delete("/runtimes").body(Body::empty()).unwrap();
    expect_error(&send(&gw, delete).await, 405, ErrorCode::MethodNotAllowed);
    let r = send(&gw, get("/readyz")).await;
    expect_error(&r, 503, ErrorCode::NoExecutors);
    assert_eq!(r.header("retry-after"), Some("1"));

    // A client's sane request id is kept, in the header and the body.
    let mut request = get("/nope");
    request
        .headers_mut()
        .insert(REQUEST_ID, "client-id-1".parse().unwrap());
    let r = send(&gw, request).await;
    assert_eq!(
        expect_error(&r, 404, ErrorCode::NotFound).id.as_deref(),
        Some("client-id-1")
    );
}

#[tokio::test]
async fn the_body_limit_is_the_layers_413_just_over_it_and_not_at_it() {
    let (gw, _) = gateway_over(options(), &[]);
    let at = " ".repeat(MAX_BODY);
    let r = send(&gw, execute(&at)).await;
    expect_error(&r, 503, ErrorCode::NoExecutors);
    let over = " ".repeat(MAX_BODY + 1);
    let r = send(&gw, execute(&over)).await;
    let e = expect_error(&r, 413, ErrorCode::PayloadTooLarge);
    assert!(
        e.error.message.contains(&format!("{MAX_BODY} bytes")),
        "{}",
        e.error.message
    );
}

#[tokio::test]
async fn probes_metrics_and_the_openapi_document_are_served() {
    let (gw, _) = gateway_over(options(), &[]);
    let r = send(&gw, get("/healthz")).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok\n"));
    let r = send(&gw, get("/openapi.json")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), runbox_api::openapi::document_json());
    let r = send(&gw, get("/metrics")).await;
    expect_error(&r, 404, ErrorCode::NotFound);
    let r = metrics(&gw).await;
    let m = testkit::Metrics::parse(&r.text());
    assert_eq!(
        m.value("gateway_connections_open"),
        Some(0.0),
        "the edge's series"
    );
    assert_eq!(
        m.value("gateway_backends{state=\"ready\"}"),
        Some(0.0),
        "{}",
        r.text()
    );
    assert_eq!(m.value("gateway_inflight_requests"), Some(0.0), "{}", r.text());
}

#[tokio::test]
async fn executor_answers_are_relayed_naming_the_executor() {
    let mut ok = StandIn::start("ok", Answer::Ok).await;
    let (gw, _) = gateway_over(options(), &[&ok.backend]);
    let r = send(&gw, execute(r#"{"code": "print('hi')"}"#)).await;
    let result = r.response();
    assert_eq!((result.status, result.stdout.as_str()), (Status::Ok, "hi\n"));
    assert_eq!(r.executor(), Some("ok"));
    let sent = ok.next_arrival().await;
    assert_eq!(
        sent.get(REQUEST_ID).and_then(|v| v.to_str().ok()),
        r.request_id(),
        "the executor got the request id the client got back"
    );
    assert_eq!(result.id, r.request_id().unwrap());
    assert_eq!(send(&gw, get("/runtimes")).await.status, 200);

    // The executor's own errors pass through with their code and message.
    let invalid = StandIn::start("invalid", Answer::Invalid).await;
    let (gw, _) = gateway_over(options(), &[&invalid.backend]);
    let r = send(&gw, execute(r#"{"code": 1}"#)).await;
    let e = expect_error(&r, 400, ErrorCode::InvalidRequest);
    assert_eq!(e.error.message, "`code`: expected a string");
    assert_eq!(r.executor(), Some("invalid"));

    // An answer outside the contract becomes upstream_failed.
    let junk = StandIn::start("junk", Answer::Junk).await;
    let (gw, _) = gateway_over(options(), &[&junk.backend]);
    let r = send(&gw, execute(r#"{"code": ""}"#)).await;
    expect_error(&r, 502, ErrorCode::UpstreamFailed);
}

#[tokio::test]
async fn an_executors_429_is_tried_on_one_other_then_passed_on() {
    let busy = StandIn::start("busy", Answer::Busy).await;
    let spare = StandIn::start("spare", Answer::Ok).await;
    let (gw, _) = gateway_over(options(), &[&busy.backend, &spare.backend]);
    for _ in 0..4 {
        let r = send(&gw, execute(r#"{"code": ""}"#)).await;
        assert_eq!(
            (r.status.as_u16(), r.executor()),
            (200, Some("spare")),
            "{}",
            r.text()
        );
    }
    let m = testkit::Metrics::parse(&metrics(&gw).await.text());
    assert_eq!(
        m.value("gateway_retries_total"),
        Some(2.0),
        "round robin starts on busy every other time"
    );

    let other = StandIn::start("busy-too", Answer::Busy).await;
    let (gw, _) = gateway_over(options(), &[&busy.backend, &other.backend]);
    let r = send(&gw, execute(r#"{"code": ""}"#)).await;
    expect_error(&r, 429, ErrorCode::Overloaded);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        r.executor(),
        Some("busy-too"),
        "the other executor's answer is passed on"
    );
    let m = testkit::Metrics::parse(&metrics(&gw).await.text());
    assert_eq!(
        m.value("gateway_retries_total"),
        Some(1.0),
        "one other executor, not more"
    );
}

#[tokio::test]
async fn a_connect_failure_is_tried_elsewhere_and_reported_to_discovery() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = Arc::new(Backend::new(
        "dead",
        "dead",
        Target::Http(parse_base_url(&format!("http://{closed}")).unwrap()),
    ));
    let live = StandIn::start("live", Answer::Ok).await;
    let (gw, discovery) = gateway_over(options(), &[&dead, &live.backend]);
    let r = send(&gw, execute(r#"{"code": ""}"#)).await;
    assert_eq!(
        (r.status.as_u16(), r.executor()),
        (200, Some("live")),
        "{}",
        r.text()
    );
    assert_eq!(*discovery.connect_failed.lock().unwrap(), ["dead"]);

    let (gw, _) = gateway_over(options(), &[&dead]);
    let r = send(&gw, execute(r#"{"code": ""}"#)).await;
    expect_error(&r, 502, ErrorCode::UpstreamUnreachable);
    assert!(r.header("retry-after").is_none());
}

#[tokio::test]
async fn an_executor_that_does_not_answer_in_time_is_504() {
    let slow = StandIn::start("slow", Answer::Hold).await;
    let (gw, _) = gateway_over(
        Options {
            request_timeout: Duration::from_millis(200),
            ..options()
        },
        &[&slow.backend],
    );
    let r = send(&gw, execute(r#"{"code": ""}"#)).await;
    expect_error(&r, 504, ErrorCode::UpstreamTimeout);
    assert!(r.header("retry-after").is_none(), "the run may have happened");
}

#[tokio::test]
async fn the_concurrency_cap_sheds_with_429_and_frees_its_slot() {
    let mut held = StandIn::start("held", Answer::Hold).await;
    let (gw, _) = gateway_over(
        Options {
            max_concurrency: 1,
            ..options()
        },
        &[&held.backend],
    );
    let first = tokio::spawn({
        let gw = gw.clone();
        async move { send(&gw, execute(r#"{"code": ""}"#)).await }
    });
    held.next_arrival().await;
    // The one slot is taken: the next request is shed at once, and probes are not capped.
    let r = send(&gw, execute(r#"{"code": ""}"#)).await;
    expect_error(&r, 429, ErrorCode::Overloaded);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(send(&gw, get("/healthz")).await.status, 200);
    held.release.add_permits(2);
    assert_eq!(first.await.unwrap().status, 200);
    let r = send(&gw, execute(r#"{"code": ""}"#)).await;
    assert_eq!(r.status, 200, "the slot came back: {}", r.text());
}

#[tokio::test]
async fn the_rate_limit_is_per_client_ip_with_retry_after() {
    let (gw, _) = gateway_over(
        Options {
            rate_limit: Some((1.0, 2)),
            ..options()
        },
        &[],
    );
    let (a, b) = ([192, 0, 2, 1], [192, 0, 2, 2]);
    // Past the door, there is no executor: 503 says the request got through.
    for _ in 0..2 {
        expect_error(
            &send(&gw, from(a, execute("{}"))).await,
            503,
            ErrorCode::NoExecutors,
        );
    }
    let r = send(&gw, from(a, execute("{}"))).await;
    expect_error(&r, 429, ErrorCode::RateLimited);
    assert_eq!(r.header("retry-after"), Some("1"));
    expect_error(
        &send(&gw, from(b, execute("{}"))).await,
        503,
        ErrorCode::NoExecutors,
    );
    let m = testkit::Metrics::parse(&metrics(&gw).await.text());
    assert_eq!(
        m.value("gateway_requests_total{code=\"429\"}"),
        Some(1.0),
        "{}",
        m.text()
    );
    assert_eq!(
        m.value("gateway_requests_total{code=\"503\"}"),
        Some(3.0),
        "{}",
        m.text()
    );
}

#[tokio::test]
async fn a_draining_gateway_refuses_new_requests_and_is_not_ready() {
    let ok = StandIn::start("ok", Answer::Ok).await;
    let (gw, _) = gateway_over(options(), &[&ok.backend]);
    assert_eq!(send(&gw, get("/readyz")).await.status, 200);
    assert!(gw.is_ready());
    gw.drain();
    assert!(!gw.is_ready());
    let r = send(&gw, execute(r#"{"code": ""}"#)).await;
    expect_error(&r, 503, ErrorCode::ShuttingDown);
    assert_eq!(r.header("retry-after"), Some("1"));
    expect_error(&send(&gw, get("/readyz")).await, 503, ErrorCode::ShuttingDown);
}

#[tokio::test]
async fn cors_allows_the_configured_origin_only() {
    let (gw, _) = gateway_over(
        Options {
            cors_origins: vec!["http://playground.example".into()],
            ..options()
        },
        &[],
    );
    let preflight = |origin: &str| {
        Request::options("/execute")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .body(Body::empty())
            .unwrap()
    };
    let r = send(&gw, preflight("http://playground.example")).await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://playground.example")
    );
    let r = send(&gw, preflight("http://evil.example")).await;
    assert!(r.header("access-control-allow-origin").is_none());
    let mut request = execute("{}");
    request
        .headers_mut()
        .insert("origin", "http://playground.example".parse().unwrap());
    let r = send(&gw, request).await;
    let exposed = r
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_owned();
    for name in [REQUEST_ID.as_str(), EXECUTOR.as_str(), "retry-after"] {
        assert!(exposed.contains(name), "{exposed}");
    }
}

/// The drop guards: a client that disconnects mid-run leaves the in-flight
/// gauge and the executor's in-flight count where they were.
#[tokio::test]
async fn inflight_counts_return_to_zero_when_the_client_disconnects() {
    let mut slow = StandIn::start("slow", Answer::Hold).await;
    let (gw, _) = gateway_over(options(), &[&slow.backend]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_url = format!("http://{}/metrics", metrics.local_addr().unwrap());
    tokio::spawn(gateway::run((listener, metrics), gw, std::future::pending()));
    let client = testkit::http::client();
    let inflight = || async {
        let reply = testkit::http::get(&client, &metrics_url).await.ok()?;
        testkit::Metrics::parse(&reply.text()).value("gateway_inflight_requests")
    };

    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = r#"{"code": "import time; time.sleep(3600)"}"#;
    let request = format!(
        "POST /execute HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    slow.next_arrival().await;
    assert_eq!(inflight().await, Some(1.0), "counted while it runs");
    assert_eq!(slow.backend.inflight(), 1);

    drop(conn);
    testkit::poll_until(
        "the in-flight gauge is back at 0",
        Duration::from_secs(10),
        inflight,
        |v| *v == Some(0.0),
    )
    .await;
    let backend = Arc::clone(&slow.backend);
    testkit::poll_until(
        "the executor's in-flight count is back at 0",
        Duration::from_secs(10),
        || {
            let backend = Arc::clone(&backend);
            async move { backend.inflight() }
        },
        |n| *n == 0,
    )
    .await;
}

#[cfg(not(feature = "embedded"))]
#[tokio::test]
async fn without_the_embedded_feature_embedded_mode_is_a_start_up_error() {
    use clap::Parser;
    for args in [
        &["gateway"][..],
        &[
            "gateway",
            "--discovery",
            "embedded",
            "--executors",
            "http://127.0.0.1:1",
        ],
    ] {
        let config = gateway::config::Config::try_parse_from(args).unwrap();
        let error = Gateway::from_config(&config).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            gateway::config::NO_EMBEDDED_EXECUTOR,
            "{args:?}"
        );
    }
}
