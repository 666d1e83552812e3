//! Static discovery: a fixed list of executor URLs, actively probed on
//! `/readyz` and passively ejected when a connection to one fails; an
//! ejected executor is re-admitted by the next successful probe.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Backend, BackendSet, Discovery, Target};

#[derive(Debug)]
pub struct StaticDiscovery {
    shared: Arc<Shared>,
    rx: watch::Receiver<BackendSet>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    backends: Vec<(Arc<Backend>, AtomicBool)>,
    tx: watch::Sender<BackendSet>,
    publish: Mutex<()>,
}

impl Shared {
    fn publish(&self) {
        let _one_at_a_time = self.publish.lock().unwrap_or_else(PoisonError::into_inner);
        let ready: Vec<_> = self
            .backends
            .iter()
            .filter(|(_, up)| up.load(Ordering::SeqCst))
            .map(|(b, _)| Arc::clone(b))
            .collect();
        let set = BackendSet {
            unready: self.backends.len() - ready.len(),
            ready: ready.into(),
        };
        set.publish(&self.tx);
    }

    fn set_up(&self, index: usize, up: bool) {
        let (backend, flag) = &self.backends[index];
        if flag.swap(up, Ordering::SeqCst) != up {
            tracing::info!(executor = %backend.name, up, "executor health changed");
            self.publish();
        }
    }
}

impl StaticDiscovery {
    /// Probes every `interval` (each probe bounded by `timeout`). Executors
    /// start out of the set until their first probe answers 200.
    pub fn spawn(
        urls: Vec<http::Uri>,
        client: Client<HttpConnector, Empty<Bytes>>,
        interval: Duration,
        timeout: Duration,
    ) -> StaticDiscovery {
        let (tx, rx) = watch::channel(BackendSet::default());
        let backends = urls
            .into_iter()
            .map(|uri| {
                let key = uri
                    .authority()
                    .map_or_else(|| uri.to_string(), ToString::to_string);
                let name = format!("http://{key}");
                (
                    Arc::new(Backend::new(key, name, Target::Http(uri))),
                    AtomicBool::new(false),
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            backends,
            tx,
            publish: Mutex::new(()),
        });
        shared.publish();
        let task = tokio::spawn(probe_loop(Arc::clone(&shared), client, interval, timeout));
        StaticDiscovery { shared, rx, task }
    }
}

impl Drop for StaticDiscovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Discovery for StaticDiscovery {
    fn subscribe(&self) -> watch::Receiver<BackendSet> {
        self.rx.clone()
    }

    fn connect_failed(&self, backend: &Backend) {
        if let Some(i) = self
            .shared
            .backends
            .iter()
            .position(|(b, _)| b.key == backend.key)
        {
            tracing::warn!(executor = %backend.name, "connect failed: ejecting until it probes healthy");
            self.shared.set_up(i, false);
        }
    }
}

async fn probe_loop(
    shared: Arc<Shared>,
    client: Client<HttpConnector, Empty<Bytes>>,
    interval: Duration,
    timeout: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let probes = shared.backends.iter().enumerate().map(|(i, (backend, _))| {
            let client = client.clone();
            async move { (i, probe(&client, backend, timeout).await) }
        });
        for (i, up) in futures::future::join_all(probes).await {
            shared.set_up(i, up);
        }
    }
}

async fn probe(client: &Client<HttpConnector, Empty<Bytes>>, backend: &Backend, timeout: Duration) -> bool {
    let Target::Http(base) = &backend.target else {
        return true;
    };
    let Ok(uri) = format!("{}readyz", base).parse::<http::Uri>() else {
        return false;
    };
    let request = async {
        let response = client.get(uri).await.ok()?;
        let ok = response.status() == http::StatusCode::OK;
        let _ = response.into_body().collect().await;
        Some(ok)
    };
    matches!(tokio::time::timeout(timeout, request).await, Ok(Some(true)))
}
