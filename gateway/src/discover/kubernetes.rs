//! Kubernetes discovery: a reflector over the executor Service's
//! EndpointSlices in one namespace. An endpoint is used while it is ready and
//! not terminating; a scale-up, a readiness flip or a pod starting to
//! terminate changes the set as soon as the watch event arrives.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Backend, BackendSet, Discovery, Target};

#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    pub namespace: String,
    /// The executor Service; slices carry `kubernetes.io/service-name=<service>`.
    pub service: String,
    /// The EndpointSlice port to use, by name.
    pub port_name: String,
}

#[derive(Debug)]
pub struct KubernetesDiscovery {
    rx: watch::Receiver<BackendSet>,
    task: JoinHandle<()>,
}

impl KubernetesDiscovery {
    /// Starts watching; the set is empty until the first list arrives.
    pub fn spawn(client: kube::Client, config: KubernetesConfig) -> KubernetesDiscovery {
        let (tx, rx) = watch::channel(BackendSet::default());
        let api: Api<EndpointSlice> = Api::namespaced(client, &config.namespace);
        let selector = format!("kubernetes.io/service-name={}", config.service);
        let (store, writer) = reflector::store();
        let events =
            reflector(writer, watcher(api, watcher::Config::default().labels(&selector))).default_backoff();
        let task = tokio::spawn(async move {
            let mut known: HashMap<String, Arc<Backend>> = HashMap::new();
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                match event {
                    // Mid re-list the store still holds the previous complete
                    // state; publish only at consistent points.
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
                    Ok(_) => {
                        backends_from(&store.state(), &config.port_name, &mut known).publish(&tx);
                    }
                    Err(error) => tracing::warn!(%error, "EndpointSlice watch failed; retrying"),
                }
            }
        });
        KubernetesDiscovery { rx, task }
    }
}

impl Drop for KubernetesDiscovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Discovery for KubernetesDiscovery {
    fn subscribe(&self) -> watch::Receiver<BackendSet> {
        self.rx.clone()
    }
}

/// Usable per the API's nil semantics: `ready` nil means ready,
/// `terminating` nil means not terminating.
fn usable(endpoint: &Endpoint) -> bool {
    let c = endpoint.conditions.as_ref();
    c.and_then(|c| c.ready).unwrap_or(true) && !c.and_then(|c| c.terminating).unwrap_or(false)
}

/// The backend set for these slices, reusing `known` backends so in-flight
/// counts survive updates. Sorted by key so round-robin order is stable.
pub fn backends_from(
    slices: &[Arc<EndpointSlice>],
    port_name: &str,
    known: &mut HashMap<String, Arc<Backend>>,
) -> BackendSet {
    let mut ready: Vec<Arc<Backend>> = Vec::new();
    let mut unready = 0;
    let mut seen = std::collections::HashSet::new();
    for slice in slices {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| p.name.as_deref() == Some(port_name))
            .or_else(|| if ports.len() == 1 { ports.first() } else { None })
            .and_then(|p| p.port);
        let Some(port) = port else { continue };
        for endpoint in &slice.endpoints {
            let Some(address) = endpoint.addresses.first() else {
                continue;
            };
            let host = if slice.address_type == "IPv6" {
                format!("[{address}]")
            } else {
                address.clone()
            };
            let key = format!("{host}:{port}");
            if !seen.insert(key.clone()) {
                continue;
            }
            if !usable(endpoint) {
                unready += 1;
                continue;
            }
            let name = endpoint
                .target_ref
                .as_ref()
                .and_then(|r| r.name.clone())
                .or_else(|| endpoint.hostname.clone())
                .unwrap_or_else(|| key.clone());
            let Ok(uri) = format!("http://{key}/").parse() else {
                continue;
            };
            let backend = known
                .entry(key.clone())
                .or_insert_with(|| Arc::new(Backend::new(key.clone(), name, Target::Http(uri))));
            ready.push(Arc::clone(backend));
        }
    }
    known.retain(|k, _| seen.contains(k));
    ready.sort_by(|a, b| a.key.cmp(&b.key));
    BackendSet {
        ready: ready.into(),
        unready,
    }
}
