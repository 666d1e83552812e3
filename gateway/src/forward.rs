//! Forwarding one API request: the balancer picks a ready executor, the
//! request goes to it (over HTTP with a pooled client, or straight into the
//! embedded executor's router), and the answer is relayed with
//! `x-runbox-executor`. At most two attempts, each on a different executor:
//! a connect failure (the request never arrived) is tried on another
//! executor, and so is an executor's 429 (busy: another may have room; if it
//! is busy too, its 429 is passed on). Nothing that may have reached an
//! executor is retried: a broken connection is 502, no answer in time 504.
//! While the forwarder holds a request that is on no executor (before the
//! first attempt, between attempts) it counts in `gateway_pending_requests`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use runbox_api::headers;
use tower::ServiceExt;

use crate::balance::{Balancer, Strategy};
use crate::discover::{Backend, BackendSet, Discovery, Target};
use crate::metrics::Metrics;
use crate::rescue::{self, GatewayError};

/// Attempts per request: the first executor and one other.
const MAX_ATTEMPTS: usize = 2;

/// Largest executor response the gateway relays (stdout + stderr are capped
/// far below this by the executor).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// How one attempt on one executor failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// No connection was made: the request never reached the executor, so
    /// trying another one is safe.
    #[error("connect failed: {0}")]
    Connect(String),
    /// The executor may have started the run: never retried.
    #[error("upstream failed: {0}")]
    Upstream(String),
    #[error("upstream timed out")]
    Timeout,
}

/// What the forwarder sends: method, path, the headers to pass on, the body.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The balancer and the upstream client; [`Forwarder::forward`] is the
/// attempt loop, [`Forwarder::send`] one attempt.
#[derive(Debug)]
pub struct Forwarder {
    balancer: Balancer,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Longest one attempt may take (`GATEWAY_REQUEST_TIMEOUT_MS`).
    timeout: Duration,
}

/// The HTTP connector every gateway client uses.
pub fn connector(connect_timeout: Duration) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded.
fn hop_by_hop(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

impl Forwarder {
    pub fn new(strategy: Strategy, connect_timeout: Duration, timeout: Duration) -> Forwarder {
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            // Below the executor's header timeout (30 s), which also closes
            // its idle keep-alive connections: the pool drops a connection
            // before the executor would.
            .pool_idle_timeout(Duration::from_secs(20))
            .build(connector(connect_timeout));
        Forwarder {
            balancer: Balancer::new(strategy),
            client,
            timeout,
        }
    }

    /// Forwards `out` to the executors of `set`, retrying as the module doc
    /// says; tells `discovery` about executors it could not connect to.
    pub async fn forward(
        &self,
        set: &BackendSet,
        discovery: &dyn Discovery,
        metrics: &Metrics,
        out: &Outbound,
    ) -> Result<axum::response::Response, GatewayError> {
        let mut tried: Vec<String> = Vec::new();
        let mut busy: Option<(Arc<Backend>, Response<Bytes>)> = None;
        let mut pending = metrics.begin_pending();
        for attempt in 0..MAX_ATTEMPTS {
            let skip: Vec<&str> = tried.iter().map(String::as_str).collect();
            let Some(backend) = self.balancer.pick(&set.ready, &skip) else {
                break;
            };
            if attempt > 0 {
                metrics.retry();
            }
            let started = Instant::now();
            let result = {
                let _inflight = backend.begin();
                pending.sent();
                self.send(&backend, out).await
            };
            metrics.upstream(started.elapsed());
            match result {
                // A busy executor: one other may have room.
                Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS && busy.is_none() => {
                    tried.push(backend.key.clone());
                    busy = Some((backend, response));
                    pending.held();
                }
                Ok(response) => return Ok(relay(response, &backend)),
                Err(ForwardError::Connect(error)) => {
                    tracing::warn!(executor = %backend.name, %error, "executor unreachable; trying another");
                    discovery.connect_failed(&backend);
                    tried.push(backend.key.clone());
                    pending.held();
                }
                Err(ForwardError::Timeout) => {
                    tracing::warn!(executor = %backend.name, "executor timed out");
                    return Err(GatewayError::UpstreamTimeout);
                }
                Err(ForwardError::Upstream(error)) => {
                    tracing::warn!(executor = %backend.name, %error, "executor failed mid-request");
                    return Err(GatewayError::UpstreamFailed);
                }
            }
        }
        match (busy, tried.is_empty()) {
            (Some((backend, response)), _) => Ok(relay(response, &backend)),
            (None, true) => Err(GatewayError::NoExecutors),
            (None, false) => Err(GatewayError::UpstreamUnreachable),
        }
    }

    /// Sends `out` to `backend` and returns its full response (one attempt,
    /// bounded by the request timeout).
    pub async fn send(&self, backend: &Backend, out: &Outbound) -> Result<Response<Bytes>, ForwardError> {
        let call = async {
            match &backend.target {
                Target::Http(base) => self.send_http(base, out).await,
                Target::Local(router) => {
                    let request = build(out, out.path_and_query.parse().map_err(|_| bad_path())?)?;
                    let response = router
                        .clone()
                        .oneshot(request.map(axum::body::Body::new))
                        .await
                        .map_err(|e| ForwardError::Upstream(e.to_string()))?;
                    collect(response).await
                }
            }
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| ForwardError::Timeout)?
    }

    async fn send_http(&self, base: &Uri, out: &Outbound) -> Result<Response<Bytes>, ForwardError> {
        let authority = base.authority().ok_or_else(bad_path)?.clone();
        let uri = Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(out.path_and_query.as_str())
            .build()
            .map_err(|_| bad_path())?;
        let response = self.client.request(build(out, uri)?).await.map_err(|e| {
            if e.is_connect() {
                ForwardError::Connect(format!("{e:#}"))
            } else {
                ForwardError::Upstream(format!("{e:#}"))
            }
        })?;
        collect(response).await
    }
}

/// The executor's response, with `x-runbox-executor` naming it. An error
/// answer is relayed as the same [`runbox_api::ApiError`] ([`rescue::relayed`]),
/// so every error the gateway sends has the contract's shape.
fn relay(response: Response<Bytes>, backend: &Backend) -> axum::response::Response {
    let (mut parts, body) = response.into_parts();
    let mut response = if parts.status.is_client_error() || parts.status.is_server_error() {
        rescue::relayed(parts.status, &parts.headers, &body).into_response()
    } else {
        for name in [
            header::CONNECTION,
            header::TRANSFER_ENCODING,
            header::CONTENT_LENGTH,
        ] {
            parts.headers.remove(name);
        }
        axum::response::Response::from_parts(parts, axum::body::Body::from(body))
    };
    if let Ok(v) = HeaderValue::from_str(&backend.name) {
        response.headers_mut().insert(headers::EXECUTOR, v);
    }
    response
}

fn bad_path() -> ForwardError {
    ForwardError::Upstream("unusable upstream URL".to_owned())
}

fn build(out: &Outbound, uri: Uri) -> Result<Request<Full<Bytes>>, ForwardError> {
    let mut request = Request::builder()
        .method(out.method.clone())
        .uri(uri)
        .body(Full::new(out.body.clone()))
        .map_err(|e| ForwardError::Upstream(e.to_string()))?;
    for (name, value) in &out.headers {
        if !hop_by_hop(name) {
            request.headers_mut().append(name, value.clone());
        }
    }
    Ok(request)
}

async fn collect<B>(response: Response<B>) -> Result<Response<Bytes>, ForwardError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = response.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| ForwardError::Upstream(format!("reading the response: {e}")))?
        .to_bytes();
    Ok(Response::from_parts(parts, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{PENDING_REQUESTS, RETRIES_TOTAL};
    use axum::routing::post;
    use tokio::sync::{Semaphore, watch};

    struct Fixed(watch::Sender<BackendSet>);

    impl Discovery for Fixed {
        fn subscribe(&self) -> watch::Receiver<BackendSet> {
            self.0.subscribe()
        }
    }

    fn value(m: &Metrics, series: &str) -> Option<f64> {
        m.render()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }

    fn local(name: &str, router: axum::Router) -> Arc<Backend> {
        Arc::new(Backend::new(name, name, Target::Local(router)))
    }

    /// Yields until `done` holds (the spawned forward makes progress on this
    /// current-thread runtime only while the test yields).
    async fn until(mut done: impl FnMut() -> bool) {
        while !done() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_request_is_pending_only_while_on_no_executor_and_cancellation_leaks_nothing() {
        let busy = local(
            "busy",
            axum::Router::new().route("/execute", post(|| async { StatusCode::TOO_MANY_REQUESTS })),
        );
        let gate = Arc::new(Semaphore::new(0));
        let held = local(
            "held",
            axum::Router::new().route(
                "/execute",
                post({
                    let gate = Arc::clone(&gate);
                    move || async move {
                        gate.acquire().await.unwrap().forget();
                        "ran"
                    }
                }),
            ),
        );
        let set = BackendSet {
            ready: vec![Arc::clone(&busy), Arc::clone(&held)].into(),
            unready: 0,
        };
        let discovery = Arc::new(Fixed(watch::channel(set.clone()).0));
        let forwarder = Arc::new(Forwarder::new(
            Strategy::RoundRobin,
            Duration::from_secs(1),
            Duration::from_secs(60),
        ));
        let metrics = Metrics::new();
        let out = Outbound {
            method: Method::POST,
            path_and_query: "/execute".into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        let spawn = || {
            let (forwarder, set, discovery, metrics, out) = (
                Arc::clone(&forwarder),
                set.clone(),
                Arc::clone(&discovery),
                metrics.clone(),
                out.clone(),
            );
            tokio::spawn(async move {
                forwarder
                    .forward(&set, &*discovery, &metrics, &out)
                    .await
                    .map(|r| r.status())
            })
        };
        assert_eq!(value(&metrics, PENDING_REQUESTS), Some(0.0));

        // The busy executor answers 429; the retry waits on the held one: on
        // an executor, so not pending.
        let first = spawn();
        until(|| held.inflight() == 1).await;
        assert_eq!(value(&metrics, RETRIES_TOTAL), Some(1.0));
        assert_eq!(value(&metrics, PENDING_REQUESTS), Some(0.0));

        // The client goes away mid-attempt: no count leaks.
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        assert_eq!(held.inflight(), 0);
        assert_eq!(value(&metrics, PENDING_REQUESTS), Some(0.0));

        // Answered: nothing left pending either.
        gate.add_permits(1);
        let second = spawn();
        assert_eq!(second.await.unwrap().unwrap(), StatusCode::OK);
        assert_eq!(value(&metrics, PENDING_REQUESTS), Some(0.0));
        assert_eq!((busy.inflight(), held.inflight()), (0, 0));
    }
}
