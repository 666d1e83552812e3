//! One `POST /execute` over hyper-util's pooled HTTP/1.1 client, classified into an [`Outcome`]
//! whose body is read as the contract's types.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use runbox_api::{ErrorBody, ExecuteResponse, headers};

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

/// A response body, read as the contract says.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A run's result (`POST /execute` → 200).
    Execution(Box<ExecuteResponse>),
    /// The error body of a refused request.
    Error(ErrorBody),
    /// Neither (an empty body, a proxy's HTML page, …).
    Other,
}

impl Body {
    /// A 200 is read as a result, anything else as an error body.
    pub fn parse(code: u16, bytes: &[u8]) -> Body {
        if code == 200 {
            serde_json::from_slice(bytes).map_or(Body::Other, |r| Body::Execution(Box::new(r)))
        } else {
            serde_json::from_slice(bytes).map_or(Body::Other, Body::Error)
        }
    }

    pub fn execution(&self) -> Option<&ExecuteResponse> {
        match self {
            Body::Execution(r) => Some(r),
            _ => None,
        }
    }
}

/// What came back for one request.
#[derive(Debug, Clone)]
pub enum Outcome {
    Response {
        code: u16,
        /// `x-runbox-executor`, else the result's `executor`.
        executor: Option<String>,
        body: Body,
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
        .get(headers::EXECUTOR)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match response.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Outcome::Transport(TransportError::Io),
    };
    let body = Body::parse(code, &bytes);
    let executor = header.or_else(|| body.execution().map(|r| r.executor.clone()));
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

/// The port the gateway serves `/metrics` on by default (`GATEWAY_METRICS_LISTEN`).
pub const GATEWAY_METRICS_PORT: u16 = 9090;

/// `http://<host of base>:9090/metrics`: the gateway's default metrics listener.
pub fn metrics_uri(base: &str) -> Result<Uri, http::uri::InvalidUri> {
    let uri: Uri = base.parse()?;
    let host = uri.host().unwrap_or("127.0.0.1");
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    format!("http://{host}:{GATEWAY_METRICS_PORT}/metrics").parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_metrics_uri_is_port_9090_on_the_target_host() {
        assert_eq!(
            metrics_uri("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:9090/metrics"
        );
        assert_eq!(
            metrics_uri("http://gw.example:80/x").unwrap(),
            "http://gw.example:9090/metrics"
        );
    }

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

    #[test]
    fn bodies_are_read_as_the_contract() {
        let ok = serde_json::to_vec(&crate::scenario::test_response(
            runbox_api::Status::Ok,
            "hi\n",
            "e1",
        ))
        .unwrap();
        let Body::Execution(r) = Body::parse(200, &ok) else {
            panic!("a result")
        };
        assert_eq!((r.stdout.as_str(), r.executor.as_str()), ("hi\n", "e1"));
        let error = br#"{"error": {"code": "overloaded", "message": "busy"}, "id": null}"#;
        let Body::Error(e) = Body::parse(429, error) else {
            panic!("an error body")
        };
        assert_eq!(e.error.code, runbox_api::ErrorCode::Overloaded);
        assert_eq!(Body::parse(502, b"<html>bad gateway</html>"), Body::Other);
        assert_eq!(
            Body::parse(200, br#"{"status": "ok"}"#),
            Body::Other,
            "not a whole result"
        );
        assert_eq!(Body::parse(200, error), Body::Other);
    }
}
