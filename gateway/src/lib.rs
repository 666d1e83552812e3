//! # runbox gateway
//!
//! The front door: accepts the executor API (`POST /execute`,
//! `GET /runtimes`) and forwards each request to one ready executor.
//!
//! ## Layout: one request, top to bottom
//!
//! - [`door`]: the per-client rate limit, the concurrency cap and the body
//!   size limit turn excess away before any executor is involved.
//! - [`discover`]: the set of ready executors, kept current by one of three
//!   sources (Kubernetes EndpointSlices, a probed static list, or an
//!   executor embedded in this process).
//! - [`balance`]: picks one executor from that set (round robin, or least
//!   in-flight of two random picks).
//! - [`forward`]: sends the request and reads the answer; a connect failure
//!   is retried once on another executor, anything later never is.
//! - [`rescue`]: the one place failures become status codes (503, 504, 502,
//!   429) with the executor's JSON error shape.
//! - [`metrics`]: Prometheus counters and histograms, `GET /metrics`.
//!
//! The playground's static files ([`assets`]) are served at `/`.

#![forbid(unsafe_code)]

pub mod assets;
pub mod balance;
pub mod config;
pub mod discover;
pub mod door;
pub mod forward;
pub mod metrics;
pub mod rescue;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use executor::api::{REQUEST_ID, RequestId};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::balance::{Balancer, Strategy};
use crate::discover::{Backend, BackendSet, Discovery};
use crate::door::{ConcurrencyCap, RateLimiter};
use crate::forward::{ForwardError, Forwarder, Outbound};
use crate::metrics::Metrics;
use crate::rescue::GatewayError;

/// Names the executor that ran the request.
pub const EXECUTOR_HEADER: HeaderName = HeaderName::from_static("x-runbox-executor");

/// Gateway behaviour that does not depend on where executors come from.
#[derive(Debug, Clone)]
pub struct Options {
    pub balance: Strategy,
    pub max_body_bytes: usize,
    pub max_concurrency: usize,
    /// Requests per second and burst per client IP; `None` for no limit.
    pub rate_limit: Option<(f64, u32)>,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub cors_origins: Vec<String>,
}

impl Options {
    pub fn from_config(c: &config::Config) -> Options {
        Options {
            balance: c.balance,
            max_body_bytes: c.body_limit_bytes,
            max_concurrency: c.max_concurrency,
            rate_limit: c.rate_limit().map(|r| (r, c.rate_limit_burst)),
            request_timeout: c.request_timeout(),
            connect_timeout: c.connect_timeout(),
            cors_origins: c.cors_origins.clone(),
        }
    }
}

/// The gateway service; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    options: Options,
    discovery: Arc<dyn Discovery>,
    backends: watch::Receiver<BackendSet>,
    balancer: Balancer,
    forwarder: Forwarder,
    metrics: Metrics,
    rate: Option<RateLimiter>,
    cap: ConcurrencyCap,
    embedded: Option<executor::Executor>,
    draining: AtomicBool,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway over `discovery`. `embedded` is the in-process executor when
    /// there is one (its readiness and metrics become the gateway's).
    pub fn new(
        options: Options,
        discovery: Arc<dyn Discovery>,
        embedded: Option<executor::Executor>,
    ) -> Gateway {
        let metrics = Metrics::new();
        let backends = discovery.subscribe();
        let mut watch_set = backends.clone();
        let gauge = metrics.clone();
        tokio::spawn(async move {
            loop {
                let (ready, unready) = {
                    let set = watch_set.borrow_and_update();
                    (set.ready.len(), set.unready)
                };
                gauge.backends(ready, unready);
                if watch_set.changed().await.is_err() {
                    break;
                }
            }
        });
        Gateway {
            inner: Arc::new(Inner {
                balancer: Balancer::new(options.balance),
                forwarder: Forwarder::new(options.connect_timeout, options.request_timeout),
                rate: options
                    .rate_limit
                    .map(|(rps, burst)| RateLimiter::new(rps, burst)),
                cap: ConcurrencyCap::new(options.max_concurrency),
                options,
                discovery,
                backends,
                metrics,
                embedded,
                draining: AtomicBool::new(false),
            }),
        }
    }

    /// Builds the discovery source the config names and the gateway over it.
    pub async fn from_config(c: &config::Config) -> anyhow::Result<Gateway> {
        use config::DiscoveryKind;
        let options = Options::from_config(c);
        Ok(match c.discovery_kind() {
            DiscoveryKind::Embedded => {
                let executor = executor::Executor::new(&c.runtime);
                let loader = executor.clone();
                tokio::spawn(async move {
                    if let Err(error) = loader.load().await {
                        tracing::error!(%error, "the embedded executor failed to load");
                    }
                });
                let discovery = Arc::new(discover::embedded::EmbeddedDiscovery::new(&executor));
                Gateway::new(options, discovery, Some(executor))
            }
            DiscoveryKind::Static => {
                anyhow::ensure!(!c.executors.is_empty(), "static discovery needs --executors");
                let urls = c
                    .executors
                    .iter()
                    .map(|u| discover::parse_base_url(u))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(anyhow::Error::msg)?;
                let client =
                    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                        .build(forward::connector(c.connect_timeout()));
                let discovery = discover::static_list::StaticDiscovery::spawn(
                    urls,
                    client,
                    Duration::from_millis(c.probe_interval_ms),
                    Duration::from_millis(c.probe_timeout_ms),
                );
                Gateway::new(options, Arc::new(discovery), None)
            }
            DiscoveryKind::Kubernetes => {
                let client = kube::Client::try_default().await?;
                let discovery = discover::kubernetes::KubernetesDiscovery::spawn(
                    client,
                    discover::kubernetes::KubernetesConfig {
                        namespace: c.namespace(),
                        service: c.k8s_service.clone(),
                        port_name: c.k8s_port_name.clone(),
                    },
                );
                Gateway::new(options, Arc::new(discovery), None)
            }
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The ready backends now.
    pub fn backends(&self) -> BackendSet {
        self.inner.backends.borrow().clone()
    }

    pub fn embedded(&self) -> Option<&executor::Executor> {
        self.inner.embedded.as_ref()
    }

    pub fn is_ready(&self) -> bool {
        if self.inner.draining.load(Ordering::SeqCst) {
            return false;
        }
        match &self.inner.embedded {
            Some(executor) => executor.sandbox().is_some(),
            None => !self.inner.backends.borrow().ready.is_empty(),
        }
    }

    /// Stops taking new requests; in-flight ones finish.
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
        if let Some(executor) = &self.inner.embedded {
            executor.drain();
        }
    }

    /// Forwards one API request; every failure is already a response.
    async fn proxy(
        &self,
        id: &str,
        peer: Option<SocketAddr>,
        request: Request,
    ) -> Result<Response, GatewayError> {
        let inner = &*self.inner;
        if inner.draining.load(Ordering::SeqCst) {
            return Err(GatewayError::ShuttingDown);
        }
        if let (Some(rate), Some(peer)) = (&inner.rate, peer) {
            rate.check(peer.ip())
                .map_err(|retry_after_secs| GatewayError::RateLimited { retry_after_secs })?;
        }
        let _permit = inner.cap.try_enter().ok_or(GatewayError::Overloaded)?;
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, inner.options.max_body_bytes)
            .await
            .map_err(|_| GatewayError::PayloadTooLarge)?;
        let mut headers = parts.headers;
        if let Ok(v) = HeaderValue::from_str(id) {
            headers.insert(REQUEST_ID, v);
        }
        let out = Outbound {
            method: parts.method,
            path_and_query: parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            headers,
            body,
        };

        let set = inner.backends.borrow().clone();
        let mut tried: Vec<String> = Vec::new();
        let mut busy: Option<(Arc<Backend>, http::Response<Bytes>)> = None;
        for attempt in 0..2 {
            let skip: Vec<&str> = tried.iter().map(String::as_str).collect();
            let Some(backend) = inner.balancer.pick(&set.ready, &skip) else {
                break;
            };
            if attempt > 0 {
                inner.metrics.retry();
            }
            let started = Instant::now();
            let result = {
                let _inflight = backend.begin();
                inner.forwarder.send(&backend, &out).await
            };
            inner.metrics.upstream(started.elapsed());
            match result {
                // A busy executor: one other may have room.
                Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS && busy.is_none() => {
                    tried.push(backend.key.clone());
                    busy = Some((backend, response));
                }
                Ok(response) => return Ok(relay(response, &backend)),
                Err(ForwardError::Connect(error)) => {
                    tracing::warn!(executor = %backend.name, %error, "executor unreachable; trying another");
                    inner.discovery.connect_failed(&backend);
                    tried.push(backend.key.clone());
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
}

/// The executor's response, unchanged but for `x-runbox-executor`.
fn relay(response: http::Response<Bytes>, backend: &Backend) -> Response {
    let (mut parts, body) = response.into_parts();
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::CONTENT_LENGTH,
    ] {
        parts.headers.remove(name);
    }
    if let Ok(v) = HeaderValue::from_str(&backend.name) {
        parts.headers.insert(EXECUTOR_HEADER, v);
    }
    Response::from_parts(parts, Body::from(body))
}

/// The router: the API inside the request span; probes, metrics and the
/// playground outside it.
pub fn router(gateway: Gateway) -> Router {
    let api = Router::new()
        .route("/execute", axum::routing::post(api))
        .route("/runtimes", get(api))
        .layer(cors(&gateway.inner.options.cors_origins));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(fallback)
        .with_state(gateway)
}

fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, REQUEST_ID])
        .expose_headers([REQUEST_ID, EXECUTOR_HEADER, header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}

async fn api(State(gw): State<Gateway>, request: Request) -> Response {
    let started = Instant::now();
    let id = RequestId::from_headers(request.headers()).0;
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let span =
        tracing::info_span!("request", id = %id, method = %request.method(), path = %request.uri().path());
    gw.inner.metrics.inflight(1.0);
    let mut response = match gw.proxy(&id, peer, request).instrument(span.clone()).await {
        Ok(response) => response,
        Err(error) => error.into_response_with_id(&id),
    };
    gw.inner.metrics.inflight(-1.0);
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    let elapsed = started.elapsed();
    gw.inner.metrics.request(response.status().as_u16(), elapsed);
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_us = elapsed.as_micros() as u64,
            "done"
        );
    });
    response
}

async fn readyz(State(gw): State<Gateway>) -> Response {
    if gw.is_ready() {
        "ready\n".into_response()
    } else {
        let id = uuid::Uuid::new_v4().to_string();
        let error = if gw.inner.draining.load(Ordering::SeqCst) {
            GatewayError::ShuttingDown
        } else {
            GatewayError::NoExecutors
        };
        error.into_response_with_id(&id)
    }
}

async fn metrics(State(gw): State<Gateway>) -> Response {
    let mut text = gw.inner.metrics.render();
    if let Some(executor) = &gw.inner.embedded {
        text.push_str(&executor.metrics().render());
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn fallback(request: Request) -> Response {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        let response = assets::serve(request.uri().clone()).await;
        if response.status() != StatusCode::NOT_FOUND {
            return response;
        }
    }
    let id = RequestId::from_headers(request.headers()).0;
    GatewayError::NotFound.into_response_with_id(&id)
}

/// Serves the gateway on `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish (bounded by the request
/// timeout), and returns.
pub async fn run(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(gateway.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let drain_timeout = gateway.inner.options.request_timeout + Duration::from_secs(1);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let draining = gateway.clone();
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutdown requested: draining");
        draining.drain();
        let _ = started_tx.send(());
    });
    let serve = tokio::spawn(async move { serve.await });
    let bounded = async {
        let _ = started_rx.await;
        tokio::time::sleep(drain_timeout).await;
    };
    tokio::select! {
        result = serve => result.map_err(std::io::Error::other)?,
        () = bounded => {
            tracing::warn!("drain timed out; exiting with requests in flight");
            Ok(())
        }
    }
}
