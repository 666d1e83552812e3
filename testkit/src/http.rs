//! A small async HTTP helper over reqwest: calls that come back as a [`Reply`] (status,
//! headers, body), read as the contract's types.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use runbox_api::{ErrorBody, ErrorCode, ExecuteRequest, ExecuteResponse, headers};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Longest a call made through [`client`] may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a probe (`/readyz`, `/metrics` while polling) may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A client for loopback test traffic: no proxy (whatever the environment says), every call
/// bounded by [`REQUEST_TIMEOUT`].
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("a reqwest client")
}

/// A [`client`] whose connections leave from `local` (e.g. `127.0.0.2`: on Linux all of
/// 127.0.0.0/8 is loopback), so one test can be several clients to a per-client limit.
pub fn client_from(local: std::net::IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .local_address(local)
        .build()
        .expect("a reqwest client")
}

/// An HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// Reads a reqwest response to its end.
    pub async fn read(response: reqwest::Response) -> reqwest::Result<Reply> {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `x-runbox-executor` (set by the gateway).
    pub fn executor(&self) -> Option<&str> {
        self.header(headers::EXECUTOR)
    }

    /// `x-request-id`.
    pub fn request_id(&self) -> Option<&str> {
        self.header(headers::REQUEST_ID)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as `T`; panics with the status and the body when it is not one.
    #[track_caller]
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {}: the body is not a {}: {e}\n{}",
                self.status,
                std::any::type_name::<T>(),
                self.text()
            )
        })
    }

    /// The body as any JSON.
    #[track_caller]
    pub fn value(&self) -> serde_json::Value {
        self.json()
    }

    /// A run's result: asserts 200 and parses the [`ExecuteResponse`].
    #[track_caller]
    pub fn response(&self) -> ExecuteResponse {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "expected a run's result: {}",
            self.text()
        );
        self.json()
    }

    /// An error: asserts a 4xx/5xx status with a JSON content type and parses the [`ErrorBody`].
    #[track_caller]
    pub fn error(&self) -> ErrorBody {
        assert!(
            self.status.is_client_error() || self.status.is_server_error(),
            "expected an error, got {}: {}",
            self.status,
            self.text()
        );
        let content_type = self.header(header::CONTENT_TYPE).unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "HTTP {} with content-type {content_type:?}: {}",
            self.status,
            self.text()
        );
        self.json()
    }

    /// Asserts this is the error `code` with HTTP `status`; returns its body.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: ErrorCode) -> ErrorBody {
        let body = self.error();
        assert_eq!(
            (self.status.as_u16(), body.error.code),
            (status, code),
            "{}",
            self.text()
        );
        body
    }
}

/// `GET url`.
pub async fn get(client: &reqwest::Client, url: &str) -> reqwest::Result<Reply> {
    Reply::read(client.get(url).send().await?).await
}

/// `POST url` with `body` as JSON.
pub async fn post_json(client: &reqwest::Client, url: &str, body: &impl Serialize) -> reqwest::Result<Reply> {
    Reply::read(client.post(url).json(body).send().await?).await
}

/// `POST url` with a raw body and content type (for malformed and oversized requests).
pub async fn post_raw(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Result<Reply> {
    let request = client
        .post(url)
        .header(header::CONTENT_TYPE, content_type)
        .body(body);
    Reply::read(request.send().await?).await
}

/// `POST {base}/execute` with `request`.
pub async fn execute(
    client: &reqwest::Client,
    base: &str,
    request: &ExecuteRequest,
) -> reqwest::Result<Reply> {
    post_json(
        client,
        &format!("{}/execute", base.trim_end_matches('/')),
        request,
    )
    .await
}
