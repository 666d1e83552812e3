//! The one place gateway failures become [`ApiError`]s (the contract's error
//! body, `{"error": {"code", "message"}, "id"}`): load shed → 429, rate
//! limited (requests/s, runs in flight, or execution-time budget per client)
//! → 429, draining or no executor → 503, upstream timeout → 504,
//! upstream unreachable or broken → 502; `Retry-After` where retrying helps.
//! An executor's own error answer is relayed as the same [`ApiError`].

use axum::BoxError;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use runbox_api::{ApiError, ErrorBody, ErrorCode};

use crate::door::Refusal;

/// Seconds a client is told to wait where waiting is all it takes.
const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("no executor is ready")]
    NoExecutors,
    #[error("the embedded executor is still loading its runtime")]
    NotReady,
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
    #[error("this client has {limit} runs in flight, as many as it may; retry when one ends")]
    TooManyRuns { limit: usize },
    #[error("this client's execution-time budget does not cover this run; it refills with time")]
    OverBudget { retry_after_secs: u64 },
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

impl GatewayError {
    /// Stable, machine-readable; the body's `code`.
    pub fn code(self) -> ErrorCode {
        match self {
            GatewayError::NoExecutors => ErrorCode::NoExecutors,
            GatewayError::NotReady => ErrorCode::NotReady,
            GatewayError::UpstreamTimeout => ErrorCode::UpstreamTimeout,
            GatewayError::UpstreamUnreachable => ErrorCode::UpstreamUnreachable,
            GatewayError::UpstreamFailed => ErrorCode::UpstreamFailed,
            GatewayError::Overloaded => ErrorCode::Overloaded,
            GatewayError::RateLimited { .. }
            | GatewayError::TooManyRuns { .. }
            | GatewayError::OverBudget { .. } => ErrorCode::RateLimited,
            GatewayError::ShuttingDown => ErrorCode::ShuttingDown,
        }
    }

    /// `Retry-After` seconds, for the failures a later retry can get past.
    /// A timeout or a broken upstream is not one: the run may have happened.
    pub fn retry_after_secs(self) -> Option<u64> {
        match self {
            GatewayError::NoExecutors
            | GatewayError::NotReady
            | GatewayError::Overloaded
            | GatewayError::ShuttingDown
            | GatewayError::TooManyRuns { .. } => Some(RETRY_AFTER_SECS),
            GatewayError::RateLimited { retry_after_secs }
            | GatewayError::OverBudget { retry_after_secs } => Some(retry_after_secs),
            GatewayError::UpstreamTimeout
            | GatewayError::UpstreamUnreachable
            | GatewayError::UpstreamFailed => None,
        }
    }
}

impl From<Refusal> for GatewayError {
    fn from(r: Refusal) -> GatewayError {
        match r {
            Refusal::InFlight { limit } => GatewayError::TooManyRuns { limit },
            Refusal::Budget { retry_after_secs } => GatewayError::OverBudget { retry_after_secs },
        }
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> ApiError {
        let error = ApiError::new(e.code(), e.to_string());
        match e.retry_after_secs() {
            Some(secs) => error.retry_after(secs),
            None => error,
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

/// The error a `tower` layer of the door failed with: load shed by the
/// concurrency cap is `overloaded`; anything else is a fault of ours.
pub async fn layer_error(error: BoxError) -> ApiError {
    if error.is::<tower::load_shed::error::Overloaded>() {
        GatewayError::Overloaded.into()
    } else {
        ApiError::internal(format!("a gateway layer failed: {error}"))
    }
}

/// A request body the door could not read whole: over `limit` (413), or
/// broken off (400). Behind the HTTP edge's buffering neither happens.
pub fn unreadable_body(error: &axum::Error, limit: usize) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return ApiError::too_large("the request body", limit);
        }
        source = e.source();
    }
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("reading the body failed: {error}"),
    )
}

/// An executor's error answer (4xx/5xx) as the client gets it: the same
/// status, code, message, id and `Retry-After`. A body that is not the
/// contract's error shape (a proxy's HTML page, a crash) becomes 502
/// `upstream_failed` naming the status the executor gave.
pub fn relayed(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ApiError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error, id }) => {
            let retry_after = headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            ApiError {
                status,
                code: error.code,
                message: error.message,
                internal: None,
                retry_after_secs: retry_after,
                id,
            }
        }
        Err(_) => ApiError::new(
            ErrorCode::UpstreamFailed,
            format!("the executor answered {} without an error body", status.as_u16()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> ErrorBody {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn errors_have_the_contract_shape_and_retry_after_where_retrying_helps() {
        let r = GatewayError::NoExecutors.into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(body(r).await.error.code, ErrorCode::NoExecutors);
        let r = GatewayError::UpstreamTimeout.into_response();
        assert_eq!(r.status(), 504);
        assert!(r.headers().get("retry-after").is_none());
        let r = GatewayError::RateLimited { retry_after_secs: 3 }.into_response();
        assert_eq!(
            (r.status().as_u16(), r.headers()["retry-after"].to_str().unwrap()),
            (429, "3")
        );
        assert_eq!(GatewayError::Overloaded.code().status(), 429);
        let r = GatewayError::from(Refusal::InFlight { limit: 2 }).into_response();
        assert_eq!(
            (r.status().as_u16(), r.headers()["retry-after"].to_str().unwrap()),
            (429, "1")
        );
        let e = body(r).await.error;
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert!(e.message.contains("2 runs in flight"), "{}", e.message);
        let r = GatewayError::from(Refusal::Budget { retry_after_secs: 7 }).into_response();
        assert_eq!(
            (r.status().as_u16(), r.headers()["retry-after"].to_str().unwrap()),
            (429, "7")
        );
        assert_eq!(body(r).await.error.code, ErrorCode::RateLimited);
        assert_eq!(ApiError::from(GatewayError::UpstreamUnreachable).status, 502);
        assert_eq!(ApiError::from(GatewayError::UpstreamFailed).status, 502);
        assert_eq!(ApiError::from(GatewayError::ShuttingDown).status, 503);
        assert_eq!(ApiError::from(GatewayError::NotReady).code, ErrorCode::NotReady);
    }

    #[tokio::test]
    async fn load_shedding_is_overloaded_and_other_layer_errors_internal() {
        let shed = layer_error(Box::new(tower::load_shed::error::Overloaded::new())).await;
        assert_eq!(
            (shed.status.as_u16(), shed.code, shed.retry_after_secs),
            (429, ErrorCode::Overloaded, Some(1))
        );
        let other = layer_error("boom".into()).await;
        assert_eq!((other.status.as_u16(), other.code), (500, ErrorCode::Internal));
    }

    #[test]
    fn executor_errors_are_relayed_as_they_came_and_junk_is_upstream_failed() {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, "2".parse().unwrap());
        let body = br#"{"error": {"code": "overloaded", "message": "queue full"}, "id": "abc"}"#;
        let e = relayed(StatusCode::TOO_MANY_REQUESTS, &headers, body);
        assert_eq!(
            (
                e.status.as_u16(),
                e.code,
                e.message.as_str(),
                e.id.as_deref(),
                e.retry_after_secs
            ),
            (429, ErrorCode::Overloaded, "queue full", Some("abc"), Some(2))
        );
        let e = relayed(
            StatusCode::INTERNAL_SERVER_ERROR,
            &HeaderMap::new(),
            b"<html>oops</html>",
        );
        assert_eq!((e.status.as_u16(), e.code), (502, ErrorCode::UpstreamFailed));
        assert!(e.message.contains("500"), "{}", e.message);
    }
}
