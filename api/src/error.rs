//! The one error shape of both servers, `{"error": {"code", "message"}, "id"}`,
//! and the stable codes behind it.

use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A stable, machine-readable error code: the body's `code` and the
/// `reason` label of the rejection metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON.
    InvalidJson,
    /// 400: the JSON is not a valid request (missing or unknown field, wrong type, too many `args`).
    InvalidRequest,
    /// 404: no such route.
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 408: the request did not arrive in time.
    RequestTimeout,
    /// 413: the body, `code` or `stdin` is over its limit.
    PayloadTooLarge,
    /// 415: the body is not declared as JSON.
    UnsupportedMediaType,
    /// 431: the request's headers are too large.
    HeadersTooLarge,
    /// 422: no runtime of that name.
    UnknownRuntime,
    /// 422: a limit that is not a positive integer, or an unknown limit.
    InvalidLimits,
    /// 429 (no room now) or 503 (waited too long): the service is at capacity.
    Overloaded,
    /// 429: this client's budget is spent.
    RateLimited,
    /// 503: the runtime is still loading.
    NotReady,
    /// 503: draining before exit.
    ShuttingDown,
    /// 503 (gateway): no executor is ready.
    NoExecutors,
    /// 502 (gateway): no executor could be reached.
    UpstreamUnreachable,
    /// 502 (gateway): the connection broke after the request was sent.
    UpstreamFailed,
    /// 504 (gateway): the executor did not answer in time.
    UpstreamTimeout,
    /// 500: a host fault; never caused by guest code.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 19] = [
        ErrorCode::InvalidJson,
        ErrorCode::InvalidRequest,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::HeadersTooLarge,
        ErrorCode::UnknownRuntime,
        ErrorCode::InvalidLimits,
        ErrorCode::Overloaded,
        ErrorCode::RateLimited,
        ErrorCode::NotReady,
        ErrorCode::ShuttingDown,
        ErrorCode::NoExecutors,
        ErrorCode::UpstreamUnreachable,
        ErrorCode::UpstreamFailed,
        ErrorCode::UpstreamTimeout,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::UnknownRuntime => "unknown_runtime",
            ErrorCode::InvalidLimits => "invalid_limits",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::NoExecutors => "no_executors",
            ErrorCode::UpstreamUnreachable => "upstream_unreachable",
            ErrorCode::UpstreamFailed => "upstream_failed",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status this code is answered with unless the caller says
    /// otherwise (`overloaded` is also sent as 503 after a queue timeout).
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidJson | ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::UnknownRuntime | ErrorCode::InvalidLimits => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Overloaded | ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::NotReady | ErrorCode::ShuttingDown | ErrorCode::NoExecutors => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::UpstreamUnreachable | ErrorCode::UpstreamFailed => StatusCode::BAD_GATEWAY,
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code for a bare status that some layer produced without a body.
    pub fn for_status(status: StatusCode) -> ErrorCode {
        match status {
            StatusCode::BAD_REQUEST => ErrorCode::InvalidRequest,
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ErrorCode::HeadersTooLarge,
            StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::InvalidRequest,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Overloaded,
            StatusCode::GATEWAY_TIMEOUT => ErrorCode::UpstreamTimeout,
            StatusCode::BAD_GATEWAY => ErrorCode::UpstreamFailed,
            _ => ErrorCode::Internal,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `error` in the error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// Safe to show the client; not stable.
    pub message: String,
}

/// Every non-2xx response body of both servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// The request id, when the request got that far.
    pub id: Option<String>,
}

/// An error on its way to becoming a response (see the `server` feature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    /// Safe to show the client.
    pub message: String,
    /// For the log only (host faults).
    pub internal: Option<String>,
    /// Seconds for `Retry-After`, where retrying helps.
    pub retry_after_secs: Option<u64>,
    pub id: Option<String>,
}

impl ApiError {
    /// An error answered with `code`'s usual status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: code.status(),
            code,
            message: message.into(),
            internal: None,
            retry_after_secs: None,
            id: None,
        }
    }

    /// A host fault: `internal` is logged, the client sees a fixed message.
    pub fn internal(internal: impl Into<String>) -> ApiError {
        ApiError {
            internal: Some(internal.into()),
            ..ApiError::new(ErrorCode::Internal, "the service failed to handle the request")
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn with_id(mut self, id: impl Into<String>) -> ApiError {
        self.id = Some(id.into());
        self
    }

    /// `"{what} is larger than the limit of {limit} bytes"`, 413.
    pub fn too_large(what: &str, limit: usize) -> ApiError {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("{what} is larger than the limit of {limit} bytes"),
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
            },
            id: self.id.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_serialises_as_its_name_and_round_trips() {
        for code in ErrorCode::ALL {
            let v = serde_json::to_value(code).unwrap();
            assert_eq!(v, code.as_str());
            assert_eq!(serde_json::from_value::<ErrorCode>(v).unwrap(), code);
        }
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "codes are unique");
    }

    #[test]
    fn codes_have_their_documented_status() {
        assert_eq!(ErrorCode::InvalidLimits.status(), 422);
        assert_eq!(ErrorCode::RateLimited.status(), 429);
        assert_eq!(ErrorCode::UpstreamTimeout.status(), 504);
        for code in ErrorCode::ALL {
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
        assert_eq!(
            ErrorCode::for_status(StatusCode::METHOD_NOT_ALLOWED),
            ErrorCode::MethodNotAllowed
        );
    }

    #[test]
    fn the_body_has_the_stable_shape() {
        let e = ApiError::new(ErrorCode::NotReady, "loading")
            .retry_after(1)
            .with_id("abc");
        assert_eq!(
            serde_json::to_value(e.body()).unwrap(),
            serde_json::json!({"error": {"code": "not_ready", "message": "loading"}, "id": "abc"})
        );
        assert_eq!(e.status, 503);
    }
}
