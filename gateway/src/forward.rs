//! Sending one request to one backend: over HTTP with a pooled client, or
//! straight into the embedded executor's router. Classifies failures so the
//! caller knows whether a retry elsewhere is safe.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::ServiceExt;

use crate::discover::{Backend, Target};

/// Largest executor response the gateway relays (stdout + stderr are capped
/// far below this by the executor).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

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

#[derive(Debug, Clone)]
pub struct Forwarder {
    client: Client<HttpConnector, Full<Bytes>>,
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
    pub fn new(connect_timeout: Duration, timeout: Duration) -> Forwarder {
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector(connect_timeout));
        Forwarder { client, timeout }
    }

    /// Sends `out` to `backend` and returns its full response.
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
