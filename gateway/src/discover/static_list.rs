//! Static discovery: a fixed list of executor URLs, actively probed on
//! `/readyz` and passively ejected when a connection to one fails; an
//! ejected executor is re-admitted by the next successful probe.
//!
//! A busy executor can answer a probe late, so probes eject only after
//! [`PROBE_FALL`] failures in a row; a refused connection ejects at once.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
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

/// Consecutive failed probes that take a ready executor out of the set.
pub const PROBE_FALL: u32 = 3;

#[derive(Debug)]
struct Shared {
    backends: Vec<(Arc<Backend>, AtomicBool)>,
    /// Consecutive failed probes per backend.
    probe_failures: Vec<AtomicU32>,
    tx: watch::Sender<BackendSet>,
    publish: Mutex<()>,
}

impl Shared {
    fn new(backends: Vec<(Arc<Backend>, AtomicBool)>, tx: watch::Sender<BackendSet>) -> Shared {
        Shared {
            probe_failures: backends.iter().map(|_| AtomicU32::new(0)).collect(),
            backends,
            tx,
            publish: Mutex::new(()),
        }
    }

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

    /// Applies one probe result: a success re-admits at once, failures eject
    /// after [`PROBE_FALL`] in a row.
    fn probed(&self, index: usize, ok: bool) {
        let failures = &self.probe_failures[index];
        if ok {
            failures.store(0, Ordering::SeqCst);
            self.set_up(index, true);
        } else if failures.fetch_add(1, Ordering::SeqCst) + 1 >= PROBE_FALL {
            self.set_up(index, false);
        }
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
        let shared = Arc::new(Shared::new(backends, tx));
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
        for (i, ok) in futures::future::join_all(probes).await {
            shared.probed(i, ok);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_eject_only_after_consecutive_failures_and_readmit_at_once() {
        let backend = Arc::new(Backend::new(
            "a",
            "a",
            Target::Http("http://a:1/".parse().unwrap()),
        ));
        let (tx, rx) = watch::channel(BackendSet::default());
        let shared = Shared::new(vec![(backend, AtomicBool::new(false))], tx);
        let ready = || rx.borrow().ready.len();
        shared.probed(0, true);
        assert_eq!(ready(), 1);
        for _ in 1..PROBE_FALL {
            shared.probed(0, false);
            assert_eq!(ready(), 1, "a slow probe or two is not enough");
        }
        shared.probed(0, true);
        for _ in 1..PROBE_FALL {
            shared.probed(0, false);
        }
        assert_eq!(ready(), 1, "a success resets the count");
        shared.probed(0, false);
        assert_eq!(ready(), 0);
        shared.probed(0, true);
        assert_eq!(ready(), 1);
    }
}
