//! The connection loop both servers run instead of `axum::serve`: hyper with
//! a timer (so the header-read timeout is on), a write deadline on every
//! socket, an idle deadline on every connection, caps on open connections
//! (in all and per client), HTTP/2 stream and header limits, and a drain on
//! shutdown bounded by a deadline. The per-request half (the body's deadline
//! and the memory budget for bodies) is `super::buffer`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use super::buffer::{Budget, Holding};

/// Largest request head (request line and headers) either server reads:
/// past it HTTP/1.1 answers 431 and HTTP/2 resets the stream.
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// Most header fields in one HTTP/1.1 request.
pub const MAX_HEADERS: usize = 64;
/// hyper's HTTP/1.1 read buffer: the head must fit in it.
const H1_MAX_BUF: usize = 64 << 10;

/// The limits of the HTTP edge, from a binary's `*_` flags (see
/// [`edge_args!`](crate::edge_args)).
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Longest a client may take to send a request's head; on HTTP/1.1 it
    /// also closes a keep-alive connection that sends no next request.
    pub header_timeout: Duration,
    /// Longest a request's whole body may take to arrive (then 408).
    pub body_timeout: Duration,
    /// Longest a write to a client may make no progress (a client that
    /// does not read its response) before the connection is closed.
    pub write_timeout: Duration,
    /// Longest a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Open connections at once; past it, new ones are closed at once.
    pub max_connections: usize,
    /// Open connections per client address (an IPv6 client by its /64);
    /// 0 for no per-client cap.
    pub max_connections_per_client: usize,
    /// Bytes of request and response bodies held in memory at once; past
    /// it, new requests get 503 `overloaded`.
    pub max_buffered_bytes: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub h2_max_streams: u32,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(20),
            write_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 2048,
            max_connections_per_client: 64,
            max_buffered_bytes: 256 << 20,
            h2_max_streams: 64,
        }
    }
}

/// What the edge counted, for a binary's `/metrics`.
#[derive(Debug, Default)]
pub struct EdgeStats {
    open: AtomicUsize,
    refused_full: AtomicU64,
    refused_client: AtomicU64,
    closed_idle: AtomicU64,
    closed_header_timeout: AtomicU64,
    closed_write_timeout: AtomicU64,
    pub(super) body_timeouts: AtomicU64,
    pub(super) budget_refusals: AtomicU64,
}

/// A snapshot of [`EdgeStats`] and the body budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EdgeSnapshot {
    /// Connections open now.
    pub open: usize,
    /// Connections closed at accept: the server was at `max_connections`.
    pub refused_full: u64,
    /// Connections closed at accept: the client was at its cap.
    pub refused_client: u64,
    /// Connections closed after `idle_timeout` with no request.
    pub closed_idle: u64,
    /// Connections closed because a request head did not arrive in time.
    pub closed_header_timeout: u64,
    /// Connections closed because a write made no progress in time.
    pub closed_write_timeout: u64,
    /// Requests answered 408: the body did not arrive in time.
    pub body_timeouts: u64,
    /// Requests answered 503: the body budget was spent.
    pub budget_refusals: u64,
    /// Body bytes held in memory now.
    pub buffered_bytes: usize,
}

/// The edge of one server: its limits, what it counted, the body budget and
/// the open connections per client. Cheap to clone; one per listener.
#[derive(Debug, Clone)]
pub struct Edge {
    inner: Arc<EdgeInner>,
}

#[derive(Debug)]
struct EdgeInner {
    config: EdgeConfig,
    stats: EdgeStats,
    budget: Budget,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    closed: Notify,
}

impl Edge {
    pub fn new(config: EdgeConfig) -> Edge {
        Edge {
            inner: Arc::new(EdgeInner {
                budget: Budget::new(config.max_buffered_bytes),
                config,
                stats: EdgeStats::default(),
                per_client: Mutex::new(HashMap::new()),
                closed: Notify::new(),
            }),
        }
    }

    pub fn config(&self) -> &EdgeConfig {
        &self.inner.config
    }

    pub(super) fn stats(&self) -> &EdgeStats {
        &self.inner.stats
    }

    pub(super) fn budget(&self) -> &Budget {
        &self.inner.budget
    }

    pub fn snapshot(&self) -> EdgeSnapshot {
        let s = &self.inner.stats;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EdgeSnapshot {
            open: s.open.load(Ordering::Relaxed),
            refused_full: n(&s.refused_full),
            refused_client: n(&s.refused_client),
            closed_idle: n(&s.closed_idle),
            closed_header_timeout: n(&s.closed_header_timeout),
            closed_write_timeout: n(&s.closed_write_timeout),
            body_timeouts: n(&s.body_timeouts),
            budget_refusals: n(&s.budget_refusals),
            buffered_bytes: self.inner.budget.used(),
        }
    }

    /// A slot for a new connection from `ip`, or `None` when the server or
    /// that client is at its cap.
    fn open(&self, ip: IpAddr) -> Option<ConnSlot> {
        let inner = &self.inner;
        let max = inner.config.max_connections.max(1);
        let open = inner.stats.open.fetch_add(1, Ordering::SeqCst);
        if open >= max {
            inner.stats.open.fetch_sub(1, Ordering::SeqCst);
            inner.stats.refused_full.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let client = client_key(ip);
        let per_client = inner.config.max_connections_per_client;
        if per_client > 0 {
            let mut map = inner.per_client.lock().unwrap_or_else(PoisonError::into_inner);
            let n = map.entry(client).or_insert(0);
            if *n >= per_client {
                drop(map);
                inner.stats.open.fetch_sub(1, Ordering::SeqCst);
                inner.stats.refused_client.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            *n += 1;
        }
        Some(ConnSlot {
            edge: self.clone(),
            client,
        })
    }

    /// Resolves once no connection is open.
    async fn all_closed(&self) {
        loop {
            let notified = self.inner.closed.notified();
            if self.inner.stats.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// The address a client is known by: IPv4 (an IPv4-mapped IPv6 address is
/// its IPv4 client), or the /64 of an IPv6 address (one subscriber's LAN).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// An open connection's place under the caps; given back on drop.
struct ConnSlot {
    edge: Edge,
    client: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let inner = &self.edge.inner;
        if inner.config.max_connections_per_client > 0 {
            let mut map = inner.per_client.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = map.get_mut(&self.client) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.client);
                }
            }
        }
        inner.stats.open.fetch_sub(1, Ordering::SeqCst);
        inner.closed.notify_waiters();
    }
}

/// Requests in flight on one connection and when the last one ended, for
/// the idle deadline.
#[derive(Debug)]
struct Activity {
    inflight: AtomicUsize,
    last: Mutex<Instant>,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            inflight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    fn last(&self) -> Instant {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves once the connection has had no request in flight for `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            let due = self.last() + idle;
            if self.inflight.load(Ordering::SeqCst) == 0 && Instant::now() >= due {
                return;
            }
            // Busy: look again one idle period from now (the end of a
            // request moves `last`, so the next look waits for that).
            let wake = if Instant::now() >= due {
                Instant::now() + idle
            } else {
                due
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// One request in flight on a connection, until its response body is done.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A socket whose writes fail with `TimedOut` once one has made no progress
/// for `timeout`: a client that stops reading cannot hold a response (and
/// its memory) forever.
struct WriteDeadline {
    io: TcpStream,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    edge: Edge,
}

impl WriteDeadline {
    fn poll_progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match op(Pin::new(&mut self.io), cx) {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let stalled = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if stalled.as_mut().poll(cx).is_ready() {
                    self.edge
                        .stats()
                        .closed_write_timeout
                        .fetch_add(1, Ordering::Relaxed);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client read nothing within the write timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_progress(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_progress(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_progress(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

fn builder(config: &EdgeConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(H1_MAX_BUF)
        .max_headers(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.h2_max_streams.max(1))
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_pending_accept_reset_streams(Some(32))
        .max_local_error_reset_streams(Some(256))
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

/// Serves `app` on `listener` under `edge`'s limits until `shutdown`
/// resolves; then stops accepting, asks every connection to close once its
/// requests are answered, and returns when all have closed or `drain` has
/// passed. Each request carries `ConnectInfo<SocketAddr>` of its peer.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    edge: Edge,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> io::Result<()> {
    let builder = builder(edge.config());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or a connection reset before
                    // accept: not fatal; back off a moment so a full fd
                    // table is not a busy loop.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        // Over a cap: the socket is closed at once (the client sees the
        // connection end before any request is read).
        let Some(slot) = edge.open(peer.ip()) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            peer,
            app.clone(),
            edge.clone(),
            builder.clone(),
            stop_rx.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    if tokio::time::timeout(drain, edge.all_closed()).await.is_err() {
        tracing::warn!(
            open = edge.snapshot().open,
            "drain timed out; exiting with connections open"
        );
    }
    Ok(())
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    edge: Edge,
    builder: auto::Builder<TokioExecutor>,
    mut stop: watch::Receiver<bool>,
    slot: ConnSlot,
) {
    let config = edge.config().clone();
    let activity = Activity::new();
    let io = TokioIo::new(WriteDeadline {
        io: stream,
        timeout: config.write_timeout,
        stalled: None,
        edge: edge.clone(),
    });
    let requests = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let inflight = requests.begin();
        let call = app.clone().oneshot(request.map(Body::new));
        async move {
            let response = call.await?;
            // In flight until the response body has been written.
            Ok::<_, Infallible>(response.map(|body| Body::new(Holding::new(body, inflight))))
        }
    });
    let conn = builder.serve_connection(io, service).into_owned();
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    let header_timeout = error
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    if header_timeout {
                        edge.stats().closed_header_timeout.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                break;
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_err() || *stop.borrow() {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = activity.idle(config.idle_timeout) => {
                edge.stats().closed_idle.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "closing an idle connection");
                break;
            }
        }
    }
    drop(slot);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_keyed_by_ipv4_address_or_ipv6_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            client_key(ip("2001:db8:1:2::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:3::1")),
            client_key(ip("2001:db8:1:2::1"))
        );
    }

    #[test]
    fn connection_caps_hold_in_all_and_per_client() {
        let edge = Edge::new(EdgeConfig {
            max_connections: 3,
            max_connections_per_client: 2,
            ..EdgeConfig::default()
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = edge.open(a).unwrap();
        let _a2 = edge.open(a).unwrap();
        assert!(edge.open(a).is_none(), "a third from the same client");
        let b1 = edge.open(b).unwrap();
        assert!(edge.open(b).is_none(), "the server is full");
        let s = edge.snapshot();
        assert_eq!((s.open, s.refused_client, s.refused_full), (3, 1, 1));
        drop(a1);
        let _a3 = edge.open(a).expect("a slot given back is reusable");
        drop(b1);
        assert_eq!(edge.snapshot().open, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_with_no_request_for_the_whole_period() {
        let activity = Activity::new();
        let idle = Duration::from_secs(10);
        let request = activity.begin();
        let started = Instant::now();
        let watch = tokio::spawn({
            let activity = Arc::clone(&activity);
            async move { activity.idle(idle).await }
        });
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert!(!watch.is_finished(), "a request is in flight");
        drop(request);
        watch.await.unwrap();
        assert_eq!(
            Instant::now().duration_since(started),
            Duration::from_secs(35),
            "idle for the whole period after the request ended"
        );
    }
}
