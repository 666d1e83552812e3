//! Kubernetes discovery with the real `kube` client against a mocked API
//! server (`tower_test::mock::pair`): a scripted LIST, then WATCH events;
//! passive ejection of an endpoint that refuses connections.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use gateway::discover::kubernetes::{KubernetesConfig, KubernetesDiscovery};
use gateway::discover::{BackendSet, Discovery};
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_stream_shim::ReceiverStream;

type MockBody = BoxBody<Bytes, Infallible>;
type Handle = tower_test::mock::Handle<Request<Body>, Response<MockBody>>;

/// The smallest stand-in for `tokio_stream::wrappers::ReceiverStream`.
mod tokio_stream_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct ReceiverStream<T>(pub tokio::sync::mpsc::UnboundedReceiver<T>);

    impl<T> futures::Stream for ReceiverStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

/// An endpoint: (ip, pod, conditions as JSON — `null` fields test nil semantics).
fn endpoint(ip: &str, pod: &str, conditions: Value) -> Value {
    json!({
        "addresses": [ip],
        "conditions": conditions,
        "targetRef": {"kind": "Pod", "name": pod, "namespace": "runbox"},
    })
}

fn slice(name: &str, version: &str, endpoints: Vec<Value>) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "runbox",
            "resourceVersion": version,
            "labels": {"kubernetes.io/service-name": "executor"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "metrics-other", "port": 9999}, {"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    })
}

fn list(version: &str, items: Vec<Value>) -> Response<MockBody> {
    let body = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSliceList",
        "metadata": {"resourceVersion": version},
        "items": items,
    });
    Response::new(Full::new(Bytes::from(body.to_string())).boxed())
}

/// A WATCH response whose events the test sends one at a time.
fn watch_stream() -> (mpsc::UnboundedSender<Value>, Response<MockBody>) {
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    let (frames_tx, frames_rx) = mpsc::unbounded_channel::<Result<Frame<Bytes>, Infallible>>();
    tokio::spawn(async move {
        let mut rx = rx;
        while let Some(event) = rx.recv().await {
            let line = format!("{event}\n");
            if frames_tx.send(Ok(Frame::data(Bytes::from(line)))).is_err() {
                break;
            }
        }
    });
    let body = StreamBody::new(ReceiverStream(frames_rx)).boxed();
    (tx, Response::new(body))
}

/// Answers the next request, asserting whether it is a LIST or a WATCH.
async fn answer(handle: &mut Handle, expect_watch: bool, response: Response<MockBody>) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("the client sent a request in time")
        .expect("the client is alive");
    let uri = request.uri().to_string();
    assert_eq!(request.method(), http::Method::GET);
    assert!(
        uri.starts_with("/apis/discovery.k8s.io/v1/namespaces/runbox/endpointslices?"),
        "{uri}"
    );
    assert!(
        uri.contains("labelSelector=kubernetes.io%2Fservice-name%3Dexecutor"),
        "{uri}"
    );
    assert_eq!(uri.contains("watch=true"), expect_watch, "{uri}");
    send.send_response(response);
}

/// Waits (at most 2 s, the bound) until the ready pods are `pods`.
async fn expect_pods(rx: &mut watch::Receiver<BackendSet>, pods: &[&str], unready: usize) {
    let check = |set: &BackendSet| {
        let names: Vec<&str> = set.ready.iter().map(|b| b.name.as_str()).collect();
        names == pods && set.unready == unready
    };
    let reached = tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|s| check(s)))
        .await
        .is_ok_and(|r| r.is_ok());
    if !reached {
        let set = rx.borrow();
        let names: Vec<&str> = set.ready.iter().map(|b| b.name.as_str()).collect();
        panic!(
            "expected ready {pods:?} (unready {unready}), have {names:?} (unready {})",
            set.unready
        );
    }
}

fn ready() -> Value {
    json!({"ready": true, "serving": true, "terminating": false})
}

#[tokio::test]
async fn endpoint_slices_drive_the_backend_set() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<MockBody>>();
    let client = kube::Client::new(service, "runbox");
    let discovery = KubernetesDiscovery::spawn(
        client,
        KubernetesConfig {
            namespace: "runbox".into(),
            service: "executor".into(),
            port_name: "http".into(),
            eject_for: Duration::from_secs(5),
        },
    );
    let mut rx = discovery.subscribe();

    // LIST: pod-a ready, pod-b not ready yet.
    let initial = slice(
        "executor-abc",
        "10",
        vec![
            endpoint("10.0.0.1", "pod-a", ready()),
            endpoint(
                "10.0.0.2",
                "pod-b",
                json!({"ready": false, "serving": false, "terminating": false}),
            ),
        ],
    );
    answer(&mut handle, false, list("10", vec![initial])).await;
    let (events, body) = watch_stream();
    answer(&mut handle, true, body).await;
    expect_pods(&mut rx, &["pod-a"], 1).await;
    let a = rx.borrow().ready[0].clone();
    match &a.target {
        gateway::discover::Target::Http(uri) => assert_eq!(uri.to_string(), "http://10.0.0.1:8080/"),
        other => panic!("{other:?}"),
    }

    // Scale up (kubectl scale --replicas=3): pod-b turns ready, pod-c appears
    // with no conditions at all (nil ready means ready).
    let scaled = slice(
        "executor-abc",
        "11",
        vec![
            endpoint("10.0.0.1", "pod-a", ready()),
            endpoint("10.0.0.2", "pod-b", ready()),
            endpoint("10.0.0.3", "pod-c", Value::Null),
        ],
    );
    events
        .send(json!({"type": "MODIFIED", "object": scaled}))
        .unwrap();
    expect_pods(&mut rx, &["pod-a", "pod-b", "pod-c"], 0).await;
    assert!(
        std::sync::Arc::ptr_eq(&a, &rx.borrow().ready[0]),
        "pod-a keeps its backend (and in-flight count)"
    );

    // Scale down: pod-a starts terminating (still serving) and leaves the set at once.
    let terminating = slice(
        "executor-abc",
        "12",
        vec![
            endpoint(
                "10.0.0.1",
                "pod-a",
                json!({"ready": false, "serving": true, "terminating": true}),
            ),
            endpoint("10.0.0.2", "pod-b", ready()),
            endpoint("10.0.0.3", "pod-c", json!({"ready": null, "terminating": null})),
        ],
    );
    events
        .send(json!({"type": "MODIFIED", "object": terminating}))
        .unwrap();
    expect_pods(&mut rx, &["pod-b", "pod-c"], 1).await;

    // A second slice of the same Service adds pod-d.
    let second = slice("executor-def", "13", vec![endpoint("10.0.0.4", "pod-d", ready())]);
    events
        .send(json!({"type": "ADDED", "object": second.clone()}))
        .unwrap();
    expect_pods(&mut rx, &["pod-b", "pod-c", "pod-d"], 1).await;

    // The first slice is deleted.
    let gone = slice("executor-abc", "14", vec![]);
    events.send(json!({"type": "DELETED", "object": gone})).unwrap();
    expect_pods(&mut rx, &["pod-d"], 0).await;

    // The watch fails (410 Gone): the client re-lists, and the new list wins.
    events
        .send(json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "too old resource version", "reason": "Expired", "code": 410,
        }}))
        .unwrap();
    let relisted = slice("executor-xyz", "20", vec![endpoint("10.0.0.5", "pod-e", ready())]);
    answer(&mut handle, false, list("20", vec![second, relisted])).await;
    let (_events, body) = watch_stream();
    answer(&mut handle, true, body).await;
    expect_pods(&mut rx, &["pod-d", "pod-e"], 0).await;
}

#[test]
fn slices_without_the_named_port_are_skipped() {
    use std::collections::HashMap;
    use std::sync::Arc;

    use gateway::discover::kubernetes::backends_from;
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    let mut s: Value = slice("s", "1", vec![endpoint("10.0.0.9", "pod-z", ready())]);
    s["ports"] = json!([{"name": "other", "port": 1}, {"name": "another", "port": 2}]);
    let parsed: EndpointSlice = serde_json::from_value(s).unwrap();
    let set = backends_from(&[Arc::new(parsed)], "http", &mut HashMap::new());
    assert!(set.ready.is_empty());

    let mut one: Value = slice("s", "1", vec![endpoint("fd00::1", "pod-v6", ready())]);
    one["addressType"] = json!("IPv6");
    one["ports"] = json!([{"port": 8080}]);
    let parsed: EndpointSlice = serde_json::from_value(one).unwrap();
    let set = backends_from(&[Arc::new(parsed)], "http", &mut HashMap::new());
    assert_eq!(
        set.ready[0].key, "[fd00::1]:8080",
        "a single unnamed port is used; IPv6 is bracketed"
    );
}

/// Discovery over the mocked API server, ejecting for `eject_for`.
fn discovery(eject_for: Duration) -> (KubernetesDiscovery, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<MockBody>>();
    let discovery = KubernetesDiscovery::spawn(
        kube::Client::new(service, "runbox"),
        KubernetesConfig {
            namespace: "runbox".into(),
            service: "executor".into(),
            port_name: "http".into(),
            eject_for,
        },
    );
    (discovery, handle)
}

/// A slice of one endpoint on 127.0.0.1 at `port`.
fn loopback_slice(name: &str, version: &str, port: u16, pod: &str, conditions: Value) -> Value {
    let mut s = slice(name, version, vec![endpoint("127.0.0.1", pod, conditions)]);
    s["ports"] = json!([{"name": "http", "port": port}]);
    s
}

fn retries(metrics: &gateway::metrics::Metrics) -> f64 {
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("gateway_retries_total ")?.parse().ok())
        .expect("gateway_retries_total is rendered")
}

#[tokio::test]
async fn an_endpoint_that_refuses_connections_is_ejected_until_its_slice_says_it_is_back() {
    use gateway::balance::Strategy;
    use gateway::forward::{Forwarder, Outbound};

    // pod-live answers; pod-dead's port has nothing listening (a SIGKILLed
    // pod the EndpointSlice still calls ready).
    let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live_port = live.local_addr().unwrap().port();
    let app = axum::Router::new().route("/execute", axum::routing::post(|| async { "ran" }));
    tokio::spawn(async move { axum::serve(live, app).await.unwrap() });
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };

    // Longer than the test: only the EndpointSlice re-admits here.
    let (discovery, mut handle) = discovery(Duration::from_secs(3600));
    let mut rx = discovery.subscribe();
    let live_slice = loopback_slice("executor-live", "10", live_port, "pod-live", ready());
    let dead_slice = |version: &str, conditions: Value| {
        loopback_slice("executor-dead", version, dead_port, "pod-dead", conditions)
    };
    answer(
        &mut handle,
        false,
        list("10", vec![live_slice.clone(), dead_slice("10", ready())]),
    )
    .await;
    let (events, body) = watch_stream();
    answer(&mut handle, true, body).await;
    let both = {
        let mut pods = [("pod-live", live_port), ("pod-dead", dead_port)];
        pods.sort_by_key(|(_, port)| format!("127.0.0.1:{port}"));
        pods.map(|(pod, _)| pod)
    };
    expect_pods(&mut rx, &both, 0).await;

    // Round robin over both: one of the first two requests meets pod-dead,
    // is retried on pod-live, and pod-dead is ejected; no later request
    // goes to it (a retry would be counted).
    let forwarder = Forwarder::new(
        Strategy::RoundRobin,
        Duration::from_secs(1),
        Duration::from_secs(10),
    );
    let metrics = gateway::metrics::Metrics::new();
    let out = Outbound {
        method: http::Method::POST,
        path_and_query: "/execute".into(),
        headers: http::HeaderMap::new(),
        body: Bytes::new(),
    };
    for _ in 0..6 {
        let set = rx.borrow().clone();
        let response = forwarder.forward(&set, &discovery, &metrics, &out).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[runbox_api::headers::EXECUTOR], "pod-live");
    }
    assert_eq!(retries(&metrics), 1.0, "one failure, then pod-dead gets nothing");
    expect_pods(&mut rx, &["pod-live"], 1).await;

    // An event about another endpoint (pod-new joins) does not re-admit it.
    let mut grown = live_slice.clone();
    grown["metadata"]["resourceVersion"] = json!("11");
    grown["endpoints"]
        .as_array_mut()
        .unwrap()
        .push(endpoint("127.0.0.3", "pod-new", ready()));
    events.send(json!({"type": "MODIFIED", "object": grown})).unwrap();
    expect_pods(&mut rx, &["pod-live", "pod-new"], 1).await;

    // Its own entry changes: the pod goes unready (it restarts), then ready
    // again, and it is back.
    events
        .send(json!({"type": "MODIFIED", "object": dead_slice("12", json!({"ready": false, "serving": false, "terminating": false}))}))
        .unwrap();
    events
        .send(json!({"type": "MODIFIED", "object": dead_slice("13", ready())}))
        .unwrap();
    let mut all = [
        ("pod-live", format!("127.0.0.1:{live_port}")),
        ("pod-new", format!("127.0.0.3:{live_port}")),
        ("pod-dead", format!("127.0.0.1:{dead_port}")),
    ];
    all.sort_by(|a, b| a.1.cmp(&b.1));
    expect_pods(&mut rx, &all.map(|(pod, _)| pod), 0).await;
}

#[tokio::test]
async fn an_ejected_endpoint_is_readmitted_when_its_time_is_up() {
    let (discovery, mut handle) = discovery(Duration::from_millis(200));
    let mut rx = discovery.subscribe();
    let one = slice("executor-abc", "10", vec![endpoint("10.0.0.1", "pod-a", ready())]);
    answer(&mut handle, false, list("10", vec![one])).await;
    let (_events, body) = watch_stream();
    answer(&mut handle, true, body).await;
    expect_pods(&mut rx, &["pod-a"], 0).await;

    let a = rx.borrow().ready[0].clone();
    discovery.connect_failed(&a);
    // Published before connect_failed returns (the timer cannot have run:
    // this runtime has one thread and the test has not yielded).
    assert!(rx.borrow().ready.is_empty());
    assert_eq!(rx.borrow().unready, 1, "an ejected endpoint counts as unready");
    discovery.connect_failed(&a);
    expect_pods(&mut rx, &["pod-a"], 0).await;
    assert!(
        std::sync::Arc::ptr_eq(&a, &rx.borrow().ready[0]),
        "the same backend comes back"
    );
}
