//! The edge's flags, declared once for both binaries with their own
//! environment prefix (`GATEWAY_*`, `EXECUTOR_*`) and defaults.

/// Declares a clap `Args` struct with the HTTP edge's flags, each read from
/// `<prefix>NAME`, and `edge()` turning it into an
/// [`EdgeConfig`](crate::server::EdgeConfig). The caller depends on clap.
///
/// ```ignore
/// runbox_api::edge_args! {
///     /// The gateway's HTTP edge.
///     pub struct GatewayEdge {
///         prefix: "GATEWAY_",
///         metrics_listen: "127.0.0.1:9090",
///         header_timeout_ms: 10_000,
///         idle_timeout_ms: 60_000,
///         max_connections: 2048,
///         max_connections_per_client: 64,
///     }
/// }
/// ```
#[macro_export]
macro_rules! edge_args {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            prefix: $prefix:literal,
            metrics_listen: $metrics:literal,
            header_timeout_ms: $header:expr,
            idle_timeout_ms: $idle:expr,
            max_connections: $conns:expr,
            max_connections_per_client: $per_client:expr $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, clap::Args)]
        $vis struct $name {
            /// Address `/metrics` is served on: a listener of its own, not the API's.
            #[arg(long, env = concat!($prefix, "METRICS_LISTEN"), default_value = $metrics)]
            pub metrics_listen: std::net::SocketAddr,

            /// Longest a client may take to send a request's head (then the
            /// connection is closed); on HTTP/1.1 it also closes a keep-alive
            /// connection that sends no next request.
            #[arg(long, env = concat!($prefix, "HEADER_TIMEOUT_MS"), default_value_t = $header)]
            pub header_timeout_ms: u64,

            /// Longest a request body may take to arrive in full (then 408
            /// `request_timeout`).
            #[arg(long, env = concat!($prefix, "BODY_TIMEOUT_MS"), default_value_t = 20_000)]
            pub body_timeout_ms: u64,

            /// Longest a write to a client may make no progress (a client
            /// that does not read its response) before the connection closes.
            #[arg(long, env = concat!($prefix, "WRITE_TIMEOUT_MS"), default_value_t = 10_000)]
            pub write_timeout_ms: u64,

            /// Longest a connection may stay open with no request in flight.
            #[arg(long, env = concat!($prefix, "IDLE_TIMEOUT_MS"), default_value_t = $idle)]
            pub idle_timeout_ms: u64,

            /// Connections open at once; past it, new ones are closed at once.
            #[arg(long, env = concat!($prefix, "MAX_CONNECTIONS"), default_value_t = $conns)]
            pub max_connections: usize,

            /// Connections open at once from one client address (an IPv6
            /// client by its /64); 0 for no per-client cap.
            #[arg(long, env = concat!($prefix, "MAX_CONNECTIONS_PER_CLIENT"), default_value_t = $per_client)]
            pub max_connections_per_client: usize,

            /// Bytes of request and response bodies held in memory at once;
            /// past it, new requests get 503 `overloaded`.
            #[arg(long, env = concat!($prefix, "MAX_BUFFERED_BYTES"), default_value_t = 256 << 20)]
            pub max_buffered_bytes: usize,

            /// Concurrent streams per HTTP/2 connection.
            #[arg(long, env = concat!($prefix, "H2_MAX_STREAMS"), default_value_t = 64)]
            pub h2_max_streams: u32,
        }

        impl $name {
            /// The API listener's edge limits.
            pub fn edge(&self) -> $crate::server::EdgeConfig {
                let ms = std::time::Duration::from_millis;
                $crate::server::EdgeConfig {
                    header_timeout: ms(self.header_timeout_ms.max(1)),
                    body_timeout: ms(self.body_timeout_ms.max(1)),
                    write_timeout: ms(self.write_timeout_ms.max(1)),
                    idle_timeout: ms(self.idle_timeout_ms.max(1)),
                    max_connections: self.max_connections.max(1),
                    max_connections_per_client: self.max_connections_per_client,
                    max_buffered_bytes: self.max_buffered_bytes,
                    h2_max_streams: self.h2_max_streams.max(1),
                }
            }
        }
    };
}
