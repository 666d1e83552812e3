//! Where executors come from: one trait, three sources (Kubernetes
//! EndpointSlices, a static URL list with health checks, and with feature
//! `embedded` an in-process executor). Each publishes the set of ready
//! backends, swapped atomically.

#[cfg(feature = "embedded")]
pub mod embedded;
pub mod kubernetes;
pub mod static_list;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Uri;
use tokio::sync::watch;

/// How a backend is reached.
#[derive(Clone)]
pub enum Target {
    /// An executor over HTTP at this base URL (`http://host:port`).
    Http(Uri),
    /// An executor in this process (or any in-process stand-in): its router,
    /// called without a network hop.
    Local(axum::Router),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Http(uri) => write!(f, "Http({uri})"),
            Target::Local(_) => f.write_str("Local"),
        }
    }
}

/// One executor. The same `Arc<Backend>` survives set updates while the
/// executor stays, so its in-flight count is continuous.
#[derive(Debug)]
pub struct Backend {
    /// Stable identity within its source (a URL, or pod address + port).
    pub key: String,
    /// What `x-runbox-executor` says: the pod name, URL, or embedded name.
    pub name: String,
    pub target: Target,
    inflight: AtomicUsize,
}

impl Backend {
    pub fn new(key: impl Into<String>, name: impl Into<String>, target: Target) -> Backend {
        Backend {
            key: key.into(),
            name: name.into(),
            target,
            inflight: AtomicUsize::new(0),
        }
    }

    /// Requests this gateway has in flight on this backend.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(Arc::clone(self))
    }
}

#[derive(Debug)]
pub struct InflightGuard(Arc<Backend>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A snapshot of the backends: the ready ones, and how many are known but
/// not ready (for the `gateway_backends{state}` gauge).
#[derive(Debug, Clone, Default)]
pub struct BackendSet {
    pub ready: Arc<[Arc<Backend>]>,
    pub unready: usize,
}

impl BackendSet {
    /// Same backends (by identity) and the same unready count.
    pub fn same_as(&self, other: &BackendSet) -> bool {
        self.unready == other.unready
            && self.ready.len() == other.ready.len()
            && self
                .ready
                .iter()
                .zip(other.ready.iter())
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// Publishes `self` on `tx` if it differs from the current set; returns
    /// whether it did. Subscribers wake only on a real change.
    pub fn publish(self, tx: &watch::Sender<BackendSet>) -> bool {
        tx.send_if_modified(|current| {
            let changed = !current.same_as(&self);
            if changed {
                tracing::info!(
                    ready = self.ready.len(),
                    unready = self.unready,
                    "executor set changed"
                );
                *current = self;
            }
            changed
        })
    }
}

/// A source of backends.
pub trait Discovery: Send + Sync + 'static {
    /// The current set, updated whenever it changes.
    fn subscribe(&self) -> watch::Receiver<BackendSet>;

    /// Passive health: the forwarder could not connect to `backend`. The
    /// static list ejects it until a probe succeeds; Kubernetes until its
    /// EndpointSlice entry changes or a few seconds pass.
    fn connect_failed(&self, _backend: &Backend) {}
}

/// `http://host:port` with no path, or an error naming what is wrong.
pub fn parse_base_url(raw: &str) -> Result<Uri, String> {
    let uri: Uri = raw
        .trim()
        .parse()
        .map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(authority)) => Uri::builder()
            .scheme("http")
            .authority(authority.as_str())
            .path_and_query("/")
            .build()
            .map_err(|e| format!("`{raw}`: {e}")),
        (Some(other), _) if other != "http" => Err(format!("`{raw}`: only http:// executors are supported")),
        _ => Err(format!("`{raw}` needs the form http://host:port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalised() {
        assert_eq!(
            parse_base_url("http://10.0.0.1:8080").unwrap().to_string(),
            "http://10.0.0.1:8080/"
        );
        assert_eq!(
            parse_base_url(" http://a:1/x ").unwrap().to_string(),
            "http://a:1/"
        );
        assert!(parse_base_url("https://a:1").is_err());
        assert!(parse_base_url("a:1").is_err());
        assert!(parse_base_url("not a url").is_err());
    }

    #[test]
    fn inflight_is_counted_by_guard() {
        let b = Arc::new(Backend::new(
            "k",
            "n",
            Target::Http(Uri::from_static("http://a:1")),
        ));
        let g1 = b.begin();
        let g2 = b.begin();
        assert_eq!(b.inflight(), 2);
        drop(g1);
        drop(g2);
        assert_eq!(b.inflight(), 0);
    }
}
