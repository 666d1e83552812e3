//! One `POST /execute` over hyper-util's pooled HTTP/1.1 client, classified into an [`Outcome`].

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::scenario::ExecResponse;

/// The response header naming the executor that ran a request (set by the gateway).
pub const EXECUTOR_HEADER: &str = "x-runbox-executor";

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive HTTP/1.1 client. `idle_per_host` = 1 gives a closed-loop worker one connection.
pub fn new_client(idle_per_host: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(idle_per_host)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Why no HTTP response arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// The TCP connection could not be made.
    Connect,
    /// No complete answer within `--timeout`.
    Timeout,
    /// The connection broke while sending or receiving.
    Io,
    /// Stopped by a second Ctrl-C or the drain deadline.
    Cancelled,
}

impl TransportError {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportError::Connect => "connect",
            TransportError::Timeout => "timeout",
            TransportError::Io => "io",
            TransportError::Cancelled => "cancelled",
        }
    }
}

/// What came back for one request.
#[derive(Debug, Clone)]
pub enum Outcome {
    Response {
        code: u16,
        /// `x-runbox-executor`, else the body's `executor`.
        executor: Option<String>,
        /// The body, if it parsed as an `/execute` answer or an API error.
        body: Option<ExecResponse>,
    },
    Transport(TransportError),
}

/// Sends `body` to `uri` and reads the whole answer, within `timeout`.
pub async fn execute(client: &HttpClient, uri: &Uri, body: Bytes, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, send(client, uri, body)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Transport(TransportError::Timeout),
    }
}

async fn send(client: &HttpClient, uri: &Uri, body: Bytes) -> Outcome {
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .expect("a valid request");
    let response = match client.request(request).await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Outcome::Transport(TransportError::Connect),
        Err(_) => return Outcome::Transport(TransportError::Io),
    };
    let code = response.status().as_u16();
    let header = response
        .headers()
        .get(EXECUTOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match response.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Outcome::Transport(TransportError::Io),
    };
    let body: Option<ExecResponse> = serde_json::from_slice(&bytes).ok();
    let executor = header.or_else(|| body.as_ref().and_then(|b| b.executor.clone()));
    Outcome::Response { code, executor, body }
}

/// `GET uri`, for `/metrics` and `/readyz`: the status and body, or `None`.
pub async fn get(client: &HttpClient, uri: &Uri, timeout: Duration) -> Option<(u16, Bytes)> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(uri.clone())
        .body(Full::new(Bytes::new()))
        .ok()?;
    let fut = async {
        let response = client.request(request).await.ok()?;
        let code = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((code, body))
    };
    tokio::time::timeout(timeout, fut).await.ok().flatten()
}

/// The `/execute` URI for a base URL (`http://host:port`, with or without a path).
pub fn execute_uri(base: &str) -> Result<Uri, http::uri::InvalidUri> {
    endpoint(base, "/execute")
}

/// `base` with its path replaced by `path` (a base already ending in `path` is kept).
pub fn endpoint(base: &str, path: &str) -> Result<Uri, http::uri::InvalidUri> {
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix(path).unwrap_or(base);
    format!("{base}{path}").parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_built_from_a_base_url() {
        assert_eq!(
            execute_uri("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080/execute"
        );
        assert_eq!(execute_uri("http://h:1/").unwrap(), "http://h:1/execute");
        assert_eq!(execute_uri("http://h:1/execute").unwrap(), "http://h:1/execute");
        assert_eq!(endpoint("http://h:1", "/metrics").unwrap(), "http://h:1/metrics");
    }
}
