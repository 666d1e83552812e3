//! The per-request half of the edge: a request's body is read whole before
//! any concurrency permit or execution slot is taken, within its deadline
//! (408) and the body limit (413), and charged, with the response body
//! after it, to the server's memory budget for bodies (503 when spent).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::edge::{Edge, client_key};
use crate::error::{ApiError, ErrorCode};

/// Bytes of bodies held in memory, against a limit in all and a share of
/// it per client: one client (its unread responses, its uploads) can hold
/// at most a quarter of the budget, so it cannot spend it for everyone.
#[derive(Debug)]
pub(super) struct Budget {
    limit: usize,
    per_client: usize,
    state: Arc<Mutex<Held>>,
}

#[derive(Debug, Default)]
struct Held {
    used: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// The share of the budget one client may hold: 1/`CLIENT_SHARE`.
pub const CLIENT_SHARE: usize = 4;

/// Why a charge was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The server holds its whole budget.
    Server,
    /// This client holds its share.
    Client,
}

/// Bytes charged to a [`Budget`] for one client, given back on drop.
#[derive(Debug)]
pub struct Charge {
    state: Arc<Mutex<Held>>,
    client: IpAddr,
    bytes: usize,
}

impl Budget {
    pub(super) fn new(limit: usize) -> Budget {
        Budget {
            limit,
            per_client: (limit / CLIENT_SHARE).max(1),
            state: Arc::new(Mutex::new(Held::default())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn used(&self) -> usize {
        self.lock().used
    }

    fn empty(&self, client: IpAddr) -> Charge {
        Charge {
            state: Arc::clone(&self.state),
            client,
            bytes: 0,
        }
    }

    /// Adds `n` bytes to `charge` if the budget and the client's share have
    /// room for them.
    fn try_grow(&self, charge: &mut Charge, n: usize) -> Result<(), Refusal> {
        let mut held = self.lock();
        if held.used.saturating_add(n) > self.limit {
            return Err(Refusal::Server);
        }
        let mine = held.by_client.get(&charge.client).copied().unwrap_or(0);
        if mine.saturating_add(n) > self.per_client {
            return Err(Refusal::Client);
        }
        held.used += n;
        *held.by_client.entry(charge.client).or_insert(0) += n;
        charge.bytes += n;
        Ok(())
    }

    /// Charges `n` bytes whether or not there is room: for a response, which
    /// exists already; the client's (and everyone's, past the budget) new
    /// requests are refused until it is gone.
    fn force(&self, client: IpAddr, n: usize) -> Charge {
        let mut held = self.lock();
        held.used += n;
        *held.by_client.entry(client).or_insert(0) += n;
        Charge {
            state: Arc::clone(&self.state),
            client,
            bytes: n,
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let mut held = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        held.used -= self.bytes;
        if let Some(mine) = held.by_client.get_mut(&self.client) {
            *mine -= self.bytes;
            if *mine == 0 {
                held.by_client.remove(&self.client);
            }
        }
    }
}

/// A response body in memory, handed to the connection in 64 KiB frames so
/// the connection takes the next one only as the client reads: the bytes
/// (and their charge) are let go when the last frame is written, or when
/// the connection is dropped.
#[derive(Debug)]
pub struct Chunked<T> {
    rest: Bytes,
    _held: T,
}

/// The frame size of [`Chunked`].
const FRAME: usize = 64 << 10;

impl<T: Unpin> HttpBody for Chunked<T> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.rest.is_empty() {
            return Poll::Ready(None);
        }
        let n = this.rest.len().min(FRAME);
        Poll::Ready(Some(Ok(Frame::data(this.rest.split_to(n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// A body that keeps `T` alive until the body is dropped (written out, or
/// its connection gone): a budget charge, a request's in-flight mark.
#[derive(Debug)]
pub struct Holding<T> {
    body: Body,
    _held: T,
}

impl<T> Holding<T> {
    pub fn new(body: Body, held: T) -> Holding<T> {
        Holding { body, _held: held }
    }
}

impl<T: Unpin> HttpBody for Holding<T> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The address a layer outside [`buffer_body`] decided the client has (the
/// gateway's, behind a trusted proxy); without it the connection's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// What [`buffer_body`] needs: the server's edge (body deadline and
/// budget) and the route's body limit.
#[derive(Debug, Clone)]
pub struct BodyBuffer {
    edge: Edge,
    limit: usize,
}

impl BodyBuffer {
    pub fn new(edge: &Edge, limit: usize) -> BodyBuffer {
        BodyBuffer {
            edge: edge.clone(),
            limit,
        }
    }
}

/// Middleware (`from_fn_with_state(BodyBuffer::new(..), buffer_body)`) that
/// reads a route's request body whole, within the deadline, the limit and
/// the budget, and charges the response body to the budget until it is
/// written. Place it outside every permit the route takes.
pub async fn buffer_body(State(b): State<BodyBuffer>, request: Request, next: Next) -> Response {
    buffer(b.edge, b.limit, request, next).await
}

async fn buffer(edge: Edge, limit: usize, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return close(ApiError::too_large("the request body", limit));
    }
    let client = match parts.extensions.get::<ClientAddr>() {
        Some(ClientAddr(ip)) => client_key(*ip),
        None => parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| client_key(c.0.ip())),
    };
    let deadline = tokio::time::Instant::now() + edge.config().body_timeout;
    let budget = edge.budget();
    let mut charge = budget.empty(client);
    let mut bytes = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    let mut body = body;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_elapsed) => {
                edge.stats().body_timeouts.fetch_add(1, Ordering::Relaxed);
                return close(ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "the request body did not arrive within {} ms",
                        edge.config().body_timeout.as_millis()
                    ),
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                return close(ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("reading the body failed: {error}"),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        if bytes.len() + data.len() > limit {
            return close(ApiError::too_large("the request body", limit));
        }
        // Room for the bytes already reserved by `with_capacity` is charged
        // as they arrive: the reservation never exceeds the limit.
        if let Err(refusal) = budget.try_grow(&mut charge, data.len()) {
            edge.stats().budget_refusals.fetch_add(1, Ordering::Relaxed);
            let retry = edge.config().write_timeout.as_secs().max(1);
            return close(match refusal {
                Refusal::Server => ApiError::new(
                    ErrorCode::Overloaded,
                    "the server holds as much request and response data as it may; retry shortly",
                )
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .retry_after(1),
                Refusal::Client => ApiError::new(
                    ErrorCode::RateLimited,
                    "this client holds its share of the server's memory for bodies \
                     (unread responses or uploads in progress); read them first",
                )
                .retry_after(retry),
            });
        }
        bytes.extend_from_slice(&data);
    }
    let request = Request::from_parts(parts, Body::from(bytes));
    let response = next.run(request).await;
    drop(charge);
    // A response in memory already is charged until written, so unread
    // responses hold the budget and new requests wait. (One of unknown
    // length is a stream, which holds no more than a frame.)
    let Some(n) = response.body().size_hint().exact().filter(|n| *n > 0) else {
        return response;
    };
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, n as usize).await else {
        return ApiError::internal("a response body in memory failed").into_response();
    };
    let held = budget.force(client, bytes.len());
    Response::from_parts(
        parts,
        Body::new(Chunked {
            rest: bytes,
            _held: held,
        }),
    )
}

/// An error answer after which the connection is closed: the rest of the
/// body, if any, is not read.
fn close(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::routing::post;
    use tower::ServiceExt;

    use super::*;
    use crate::ErrorBody;
    use crate::server::EdgeConfig;

    fn app(edge: &Edge, limit: usize) -> Router {
        Router::new()
            .route("/echo", post(|body: Bytes| async move { body }))
            .layer(axum::middleware::from_fn_with_state(
                BodyBuffer::new(edge, limit),
                buffer_body,
            ))
    }

    fn edge(budget: usize, body_timeout: Duration) -> Edge {
        Edge::new(EdgeConfig {
            max_buffered_bytes: budget,
            body_timeout,
            ..EdgeConfig::default()
        })
    }

    async fn code(response: Response) -> (u16, ErrorCode) {
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let e: ErrorBody = serde_json::from_slice(&bytes).unwrap();
        (status, e.error.code)
    }

    #[tokio::test]
    async fn bodies_at_the_limit_pass_and_over_it_are_413() {
        let edge = edge(1 << 20, Duration::from_secs(5));
        let post = |n: usize| Request::post("/echo").body(Body::from(vec![b'x'; n])).unwrap();
        let ok = app(&edge, 10).oneshot(post(10)).await.unwrap();
        assert_eq!(ok.status(), 200);
        let over = app(&edge, 10).oneshot(post(11)).await.unwrap();
        assert_eq!(over.headers()["connection"], "close");
        assert_eq!(code(over).await, (413, ErrorCode::PayloadTooLarge));
    }

    fn post_from(client: [u8; 4], n: usize) -> Request {
        let mut request = Request::post("/echo").body(Body::from(vec![b'x'; n])).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((client, 40000))));
        request
    }

    #[tokio::test]
    async fn the_budget_holds_responses_until_written_and_refuses_past_it() {
        // 400 bytes in all, 100 per client.
        let edge = edge(400, Duration::from_secs(5));
        let send = |client: [u8; 4], n: usize| app(&edge, 1000).oneshot(post_from(client, n));
        let unread = send([10, 0, 0, 1], 60).await.unwrap();
        assert_eq!(unread.status(), 200);
        assert_eq!(
            edge.snapshot().buffered_bytes,
            60,
            "the unread response is charged"
        );
        let refused = send([10, 0, 0, 1], 41).await.unwrap();
        assert_eq!(
            code(refused).await,
            (429, ErrorCode::RateLimited),
            "over this client's share"
        );
        let fits = send([10, 0, 0, 1], 40).await.unwrap();
        assert_eq!(fits.status(), 200, "exactly the room left in its share");
        let mut others = Vec::new();
        for i in 2..=4 {
            let r = send([10, 0, 0, i], 100).await.unwrap();
            assert_eq!(r.status(), 200, "other clients have their own shares");
            others.push(r);
        }
        let full = send([10, 0, 0, 9], 1).await.unwrap();
        assert_eq!(
            code(full).await,
            (503, ErrorCode::Overloaded),
            "the server's budget is spent"
        );
        drop((unread, fits, others));
        assert_eq!(edge.snapshot().buffered_bytes, 0, "given back when dropped");
        assert_eq!(edge.snapshot().budget_refusals, 2);
    }

    #[tokio::test]
    async fn a_response_is_let_go_frame_by_frame_as_it_is_read() {
        let edge = edge(1 << 30, Duration::from_secs(5));
        let n = 3 * FRAME + 5;
        let response = app(&edge, 1 << 20)
            .oneshot(post_from([10, 0, 0, 1], n))
            .await
            .unwrap();
        let mut body = response.into_body();
        let mut sizes = Vec::new();
        while let Some(frame) = body.frame().await {
            sizes.push(frame.unwrap().into_data().unwrap().len());
            assert_eq!(
                edge.snapshot().buffered_bytes,
                n,
                "held while any frame is unwritten"
            );
        }
        assert_eq!(sizes, [FRAME, FRAME, FRAME, 5]);
        drop(body);
        assert_eq!(edge.snapshot().buffered_bytes, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_does_not_arrive_in_time_is_408() {
        let edge = edge(1 << 20, Duration::from_secs(3));
        let (tx, body) = fed();
        let request = Request::post("/echo").body(body).unwrap();
        let call = tokio::spawn(app(&edge, 1000).oneshot(request));
        tx.send(Bytes::from_static(b"part")).await.unwrap();
        let response = call.await.unwrap().unwrap();
        assert_eq!(code(response).await, (408, ErrorCode::RequestTimeout));
        assert_eq!(edge.snapshot().body_timeouts, 1);
        assert_eq!(edge.snapshot().buffered_bytes, 0);
        drop(tx);
    }

    /// A body fed by hand, never finished until the sender is dropped.
    struct Fed(tokio::sync::mpsc::Receiver<Bytes>);

    impl HttpBody for Fed {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.get_mut()
                .0
                .poll_recv(cx)
                .map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    fn fed() -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (tx, Body::new(Fed(rx)))
    }
}
