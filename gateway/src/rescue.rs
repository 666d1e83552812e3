//! The one place failures become responses: load shed → 429/503, no
//! executor → 503, upstream timeout → 504, upstream unreachable → 502. The
//! body has the executor's error shape, `{"error": {"code", "message"}, "id"}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("no executor is ready")]
    NoExecutors,
    #[error("the executor did not answer in time")]
    UpstreamTimeout,
    #[error("no executor could be reached")]
    UpstreamUnreachable,
    #[error("the connection to the executor failed mid-request")]
    UpstreamFailed,
    #[error("the gateway is at its concurrency limit")]
    Overloaded,
    #[error("too many requests from this client")]
    RateLimited { retry_after_secs: u64 },
    #[error("the request body is larger than the gateway's limit")]
    PayloadTooLarge,
    #[error("no route")]
    NotFound,
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

impl GatewayError {
    pub fn status(self) -> StatusCode {
        match self {
            GatewayError::NoExecutors | GatewayError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::UpstreamUnreachable | GatewayError::UpstreamFailed => StatusCode::BAD_GATEWAY,
            GatewayError::Overloaded | GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// Stable, machine-readable.
    pub fn code(self) -> &'static str {
        match self {
            GatewayError::NoExecutors => "no_executors",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::UpstreamUnreachable => "upstream_unreachable",
            GatewayError::UpstreamFailed => "upstream_failed",
            GatewayError::Overloaded => "overloaded",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::PayloadTooLarge => "payload_too_large",
            GatewayError::NotFound => "not_found",
            GatewayError::ShuttingDown => "shutting_down",
        }
    }

    fn retry_after(self) -> Option<u64> {
        match self {
            GatewayError::NoExecutors | GatewayError::Overloaded | GatewayError::ShuttingDown => Some(1),
            GatewayError::RateLimited { retry_after_secs } => Some(retry_after_secs),
            _ => None,
        }
    }

    pub fn into_response_with_id(self, id: &str) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code(), "message": self.to_string() },
            "id": id,
        });
        let mut response = (self.status(), Json(body)).into_response();
        if let Some(secs) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_have_the_executor_shape_and_retry_after_where_retrying_helps() {
        let r = GatewayError::NoExecutors.into_response_with_id("abc");
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "no_executors");
        assert_eq!(v["id"], "abc");
        let r = GatewayError::UpstreamTimeout.into_response_with_id("x");
        assert_eq!(r.status(), 504);
        assert!(r.headers().get("retry-after").is_none());
        assert_eq!(GatewayError::UpstreamUnreachable.status(), 502);
        let r = GatewayError::RateLimited { retry_after_secs: 3 }.into_response_with_id("x");
        assert_eq!(
            (r.status().as_u16(), r.headers()["retry-after"].to_str().unwrap()),
            (429, "3")
        );
    }
}
