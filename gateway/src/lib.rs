//! # runbox gateway
//!
//! The front door: accepts the executor API (`POST /execute`,
//! `GET /runtimes`) and forwards each request to one ready executor.
//!
//! ## Layout: one request, top to bottom
//!
//! - `runbox_api::server::layers` (around everything): the request id, taken
//!   from the client when sane or minted, echoed on the response and passed
//!   to the executor; every error response leaves as the contract's JSON
//!   error body. Then, around the API routes only: CORS, the request span
//!   (`trace_layer`), and [`metrics::observe`] (the in-flight gauge is a drop
//!   guard, so a client that goes away leaves it as it found it).
//! - [`door`]: layers that turn excess away before any executor is involved:
//!   a draining gateway (503), the per-client token bucket (429
//!   `rate_limited`; the client is the peer IP, or what a trusted proxy
//!   says, IPv6 by /64), per-client fairness (runs in flight and an
//!   execution-seconds budget, 429 `rate_limited`), the concurrency cap with
//!   load shedding (429 `overloaded`), and the body limit (413).
//! - [`discover`]: the set of ready executors, kept current by one of three
//!   sources (Kubernetes EndpointSlices, a probed static list, or, with
//!   feature `embedded`, an executor in this process); an executor that
//!   refused a connection is ejected (static: until a probe succeeds;
//!   Kubernetes: until its EndpointSlice entry changes or a few seconds pass).
//! - [`balance`]: picks one executor from that set (round robin, or the
//!   less busy of two random picks).
//! - [`forward`]: sends the request and relays the answer, at most twice: a
//!   connect failure is tried on another executor, and so is an executor's
//!   429 (if the other is busy too, its 429 is passed on); nothing that may
//!   have reached an executor is retried (502, 504).
//! - [`rescue`]: the one place failures become `runbox_api::ApiError`s (429,
//!   502, 503, 504, with `Retry-After` where retrying helps), and where an
//!   executor's error answer is relayed in the same shape.
//! - [`metrics`]: Prometheus counters and histograms, `GET /metrics` on a
//!   listener of its own ([`metrics_router`], `GATEWAY_METRICS_LISTEN`);
//!   `gateway_pending_requests` is the backlog held in [`forward`] on no
//!   executor.
//!
//! Beside the API: `/healthz`, `/readyz`, `/openapi.json`, and the
//! playground's static files ([`assets`]) at `/`.
//!
//! Under it all, `runbox_api::server::serve` is the connection loop (header,
//! write and idle timeouts, caps on open connections in all and per client,
//! HTTP/2 limits), and `runbox_api::server::buffer_body` reads each API
//! body whole, within its deadline and the memory budget for bodies, before
//! any permit is taken.
//!
//! Without feature `embedded` (the Kubernetes image) the gateway links no
//! wasmtime and needs executors from `GATEWAY_EXECUTORS` or Kubernetes.

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
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use runbox_api::headers::{EXECUTOR, REQUEST_ID};
use runbox_api::server::{self, BodyBuffer, BodyBytes, Edge, EdgeConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::balance::Strategy;
use crate::discover::{BackendSet, Discovery};
use crate::door::{Door, RateLimiter};
use crate::forward::{Forwarder, Outbound};
use crate::metrics::Metrics;
use crate::rescue::GatewayError;

/// Gateway behaviour that does not depend on where executors come from.
#[derive(Debug, Clone)]
pub struct Options {
    pub balance: Strategy,
    pub max_body_bytes: usize,
    pub max_concurrency: usize,
    /// Requests per second and burst per client; `None` for no limit.
    pub rate_limit: Option<(f64, u32)>,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` name the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Per-client runs in flight and execution-time budget.
    pub fairness: door::FairnessConfig,
    /// Longest one attempt on an executor may take (then 504).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub cors_origins: Vec<String>,
    /// The HTTP edge's limits (timeouts, connection caps, body budget).
    pub edge: EdgeConfig,
}

impl Options {
    pub fn from_config(c: &config::Config) -> Options {
        Options {
            balance: c.balance,
            max_body_bytes: c.body_limit_bytes,
            max_concurrency: c.max_concurrency,
            rate_limit: c.rate_limit().map(|r| (r, c.rate_limit_burst)),
            trusted_proxies: c.clients.trusted_proxies.clone(),
            fairness: c.fairness(),
            request_timeout: c.request_timeout(),
            connect_timeout: c.connect_timeout(),
            cors_origins: c.cors_origins.clone(),
            edge: c.edge.edge(),
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
    forwarder: Forwarder,
    metrics: Metrics,
    door: Arc<Door>,
    edge: Edge,
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    embedded: InProcess,
}

/// The in-process executor (feature `embedded`), when there is one: its
/// readiness, drain and metrics become the gateway's, and its failing to load
/// ends the process.
#[derive(Default)]
struct InProcess(#[cfg(feature = "embedded")] Option<Arc<discover::embedded::EmbeddedDiscovery>>);

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway over `discovery` (call inside a tokio runtime). Fails only
    /// on a rate limit that is not a positive number, or a per-client budget
    /// that is not a number ≥ 0.
    pub fn new(options: Options, discovery: Arc<dyn Discovery>) -> Result<Gateway, String> {
        Gateway::build(options, discovery, InProcess::default())
    }

    fn build(
        options: Options,
        discovery: Arc<dyn Discovery>,
        embedded: InProcess,
    ) -> Result<Gateway, String> {
        let rate = match options.rate_limit {
            Some((rps, burst)) => Some(RateLimiter::new(rps, burst)?),
            None => None,
        };
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
        Ok(Gateway {
            inner: Arc::new(Inner {
                forwarder: Forwarder::new(options.balance, options.connect_timeout, options.request_timeout),
                door: Arc::new(
                    Door::new(rate, options.max_concurrency, options.max_body_bytes)
                        .trusting(door::TrustedProxies::new(options.trusted_proxies.iter().copied()))
                        .fair(door::Fairness::new(options.fairness.clone())?)
                        .counting(metrics.clone()),
                ),
                edge: Edge::new(options.edge.clone()),
                options,
                discovery,
                backends,
                metrics,
                embedded,
            }),
        })
    }

    /// A gateway over an executor in this process, whose runtime starts
    /// loading now.
    #[cfg(feature = "embedded")]
    pub fn embedded(options: Options, executor: executor::Executor) -> Result<Gateway, String> {
        let discovery = Arc::new(discover::embedded::EmbeddedDiscovery::start(executor));
        Gateway::build(
            options,
            Arc::clone(&discovery) as Arc<dyn Discovery>,
            InProcess(Some(discovery)),
        )
    }

    /// Builds the discovery source the config names and the gateway over it.
    pub async fn from_config(c: &config::Config) -> anyhow::Result<Gateway> {
        use config::DiscoveryKind;
        let options = Options::from_config(c);
        let gateway = match c.discovery_kind() {
            #[cfg(feature = "embedded")]
            DiscoveryKind::Embedded => Gateway::embedded(options, executor::Executor::new(&c.runtime)),
            #[cfg(not(feature = "embedded"))]
            DiscoveryKind::Embedded => anyhow::bail!(config::NO_EMBEDDED_EXECUTOR),
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
                Gateway::new(options, Arc::new(discovery))
            }
            DiscoveryKind::Kubernetes => {
                let client = kube::Client::try_default().await?;
                let discovery = discover::kubernetes::KubernetesDiscovery::spawn(
                    client,
                    discover::kubernetes::KubernetesConfig {
                        namespace: c.namespace(),
                        service: c.k8s_service.clone(),
                        port_name: c.k8s_port_name.clone(),
                        eject_for: Duration::from_millis(c.k8s_eject_ms),
                    },
                );
                Gateway::new(options, Arc::new(discovery))
            }
        };
        gateway.map_err(anyhow::Error::msg)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The ready backends now.
    pub fn backends(&self) -> BackendSet {
        self.inner.backends.borrow().clone()
    }

    #[cfg(feature = "embedded")]
    pub fn embedded_executor(&self) -> Option<&executor::Executor> {
        self.inner.embedded.0.as_deref().map(|e| e.executor())
    }

    pub fn is_ready(&self) -> bool {
        self.not_ready().is_none()
    }

    /// Why `/readyz` says 503, if it does.
    fn not_ready(&self) -> Option<GatewayError> {
        if self.inner.door.is_closed() {
            return Some(GatewayError::ShuttingDown);
        }
        #[cfg(feature = "embedded")]
        if let Some(embedded) = &self.inner.embedded.0 {
            return (!embedded.executor().is_ready()).then_some(GatewayError::NotReady);
        }
        self.inner
            .backends
            .borrow()
            .ready
            .is_empty()
            .then_some(GatewayError::NoExecutors)
    }

    /// Stops taking new requests; in-flight ones finish.
    pub fn drain(&self) {
        self.inner.door.close();
        #[cfg(feature = "embedded")]
        if let Some(embedded) = &self.inner.embedded.0 {
            embedded.executor().drain();
        }
    }

    /// Resolves with the reason when the gateway cannot go on (the embedded
    /// executor's runtime failed to load); never otherwise.
    pub async fn failed(&self) -> String {
        #[cfg(feature = "embedded")]
        if let Some(embedded) = &self.inner.embedded.0 {
            return format!(
                "the embedded executor failed to load: {}",
                embedded.load_failed().await
            );
        }
        std::future::pending().await
    }
}

/// The router: everything inside `runbox_api::server::layers`; the API routes
/// also inside CORS, the request span, the metrics and the door.
pub fn router(gateway: Gateway) -> Router {
    let inner = &gateway.inner;
    // An embedded executor's runtimes are known, so the document names them;
    // over remote executors it leaves `runtime` open.
    #[cfg(feature = "embedded")]
    let openapi = match gateway.embedded_executor() {
        Some(executor) => server::openapi_for(&executor.args().runtimes),
        None => get(server::openapi),
    };
    #[cfg(not(feature = "embedded"))]
    let openapi = get(server::openapi);
    let api = Router::new()
        .route("/execute", post(api))
        .route("/runtimes", get(api));
    let buffer = BodyBuffer::new(&inner.edge, inner.options.max_body_bytes);
    let api = door::layers(api, &inner.door, Some(buffer))
        .layer(axum::middleware::from_fn_with_state(
            inner.metrics.clone(),
            metrics::observe,
        ))
        .layer(server::trace_layer())
        .layer(cors(&inner.options.cors_origins));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/openapi.json", openapi)
        .merge(api)
        .fallback(fallback)
        .with_state(gateway);
    server::layers(app)
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
        .expose_headers([REQUEST_ID, EXECUTOR, header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}

/// `POST /execute` and `GET /runtimes`, past the door: forwarded as they
/// came (with the request id the layers set), the body unparsed.
async fn api(
    State(gw): State<Gateway>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    BodyBytes(body): BodyBytes,
) -> Response {
    let out = Outbound {
        method,
        path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        headers,
        body,
    };
    let inner = &*gw.inner;
    let set = inner.backends.borrow().clone();
    match inner
        .forwarder
        .forward(&set, &*inner.discovery, &inner.metrics, &out)
        .await
    {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn readyz(State(gw): State<Gateway>) -> Response {
    match gw.not_ready() {
        None => "ready\n".into_response(),
        Some(error) => error.into_response(),
    }
}

/// `GET /metrics` (the gateway's series, its edge's, and the embedded
/// executor's), for the metrics listener.
pub fn metrics_router(gateway: Gateway) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(server::not_found)
        .with_state(gateway)
}

async fn metrics(State(gw): State<Gateway>) -> Response {
    let text = gw.inner.metrics.render() + &server::render_edge("gateway", &gw.inner.edge.snapshot());
    #[cfg(feature = "embedded")]
    let text = match gw.embedded_executor() {
        Some(executor) => text + &executor.metrics().render(),
        None => text,
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// GET and HEAD of anything else: the playground's files; else 404.
async fn fallback(request: Request) -> Response {
    if (request.method() == Method::GET || request.method() == Method::HEAD)
        && let Some(response) = assets::serve(request.uri().path())
    {
        return response;
    }
    server::not_found(request).await.into_response()
}

/// Serves the gateway on `listeners.0` under its edge's limits, and
/// `/metrics` on `listeners.1`, until `shutdown` resolves (or the gateway
/// fails, see [`Gateway::failed`]), then stops accepting, lets in-flight
/// requests finish (bounded by the request timeout), and returns; an error
/// when the gateway failed.
pub async fn run(
    listeners: (TcpListener, TcpListener),
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(gateway.clone());
    let metrics = metrics_router(gateway.clone());
    let drain_timeout = gateway.inner.options.request_timeout + Duration::from_secs(1);
    let failure = Arc::new(OnceLock::<String>::new());
    let (draining, failed) = (gateway.clone(), Arc::clone(&failure));
    let shutdown = async move {
        tokio::select! {
            () = shutdown => tracing::info!("shutdown requested: draining"),
            reason = draining.failed() => {
                tracing::error!(error = %reason, "exiting");
                let _ = failed.set(reason);
            }
        }
        draining.drain();
    };
    let (api, metrics_listener) = listeners;
    let edge = gateway.inner.edge.clone();
    server::serve_with_metrics(
        (api, app, edge),
        (metrics_listener, metrics),
        shutdown,
        drain_timeout,
    )
    .await?;
    match failure.get() {
        Some(reason) => Err(std::io::Error::other(reason.clone())),
        None => Ok(()),
    }
}
