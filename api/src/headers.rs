//! Header names the services set and read.

use http::HeaderName;

/// The request id: taken from the client when sane, else minted; echoed on
/// every response and passed from the gateway to the executor.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Set by the gateway: the executor that ran the request.
pub const EXECUTOR: HeaderName = HeaderName::from_static("x-runbox-executor");

/// Longest request id taken from a client.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A client's request id is kept when it is 1–128 characters of
/// `[A-Za-z0-9._:-]`, so it can be logged and echoed without escaping.
pub fn is_sane_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_sane_only_when_short_and_plain() {
        assert!(is_sane_request_id(b"abc-123_x.y:z"));
        assert!(is_sane_request_id(&[b'a'; MAX_REQUEST_ID_LEN]));
        assert!(!is_sane_request_id(&[b'a'; MAX_REQUEST_ID_LEN + 1]));
        assert!(!is_sane_request_id(b""));
        assert!(!is_sane_request_id(b"has space"));
        assert!(!is_sane_request_id(b"new\nline"));
    }
}
