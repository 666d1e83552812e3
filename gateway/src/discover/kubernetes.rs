//! Kubernetes discovery: a reflector over the executor Service's
//! EndpointSlices in one namespace. An endpoint is used while it is ready and
//! not terminating; a scale-up, a readiness flip or a pod starting to
//! terminate changes the set as soon as the watch event arrives.
//!
//! Passive ejection: an endpoint the forwarder could not connect to (a
//! SIGKILLed pod reads ready until its kubelet and the EndpointSlice
//! controller catch up) leaves the set at once, and comes back when its
//! EndpointSlice entry changes (its conditions or its pod: it went unready
//! and ready again, or another pod took the address) or after
//! [`KubernetesConfig::eject_for`] ([`EJECT_MS`] by default), whichever is
//! first. An ejected endpoint counts as unready.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use kube::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Backend, BackendSet, Discovery, Target};

#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    pub namespace: String,
    /// The executor Service; slices carry `kubernetes.io/service-name=<service>`.
    pub service: String,
    /// The EndpointSlice port to use, by name.
    pub port_name: String,
    /// Longest an endpoint stays ejected after a connect failure if its
    /// EndpointSlice entry does not change first.
    pub eject_for: Duration,
}

/// The default of [`KubernetesConfig::eject_for`] in milliseconds
/// (`GATEWAY_K8S_EJECT_MS`): long enough that a dead pod costs one retry
/// every few seconds rather than every other request, short enough that an
/// endpoint ejected for a blip is soon back.
pub const EJECT_MS: u64 = 5_000;

#[derive(Debug)]
pub struct KubernetesDiscovery {
    shared: Arc<Shared>,
    rx: watch::Receiver<BackendSet>,
    task: JoinHandle<()>,
}

/// What an endpoint's entry says beyond its address; a change re-admits an
/// ejected endpoint.
type Entry = (Option<EndpointConditions>, Option<ObjectReference>);

#[derive(Debug)]
struct Shared {
    tx: watch::Sender<BackendSet>,
    eject_for: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The set the EndpointSlices say, before ejections.
    listed: BackendSet,
    /// Each listed ready endpoint's entry, by key.
    entries: HashMap<String, Entry>,
    /// Ejected endpoints, by key.
    ejected: HashMap<String, Ejection>,
    /// Ejections made so far; an ejection's timer lifts only its own.
    ejections: u64,
}

#[derive(Debug)]
struct Ejection {
    /// The endpoint's entry when it was ejected.
    entry: Entry,
    id: u64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes the listed set minus the ejected endpoints (under the
    /// state lock, so publications follow the state's order).
    fn publish(&self, state: &State) {
        let ready: Vec<Arc<Backend>> = state
            .listed
            .ready
            .iter()
            .filter(|b| !state.ejected.contains_key(&b.key))
            .cloned()
            .collect();
        BackendSet {
            unready: state.listed.unready + (state.listed.ready.len() - ready.len()),
            ready: ready.into(),
        }
        .publish(&self.tx);
    }

    /// A new view of the slices: ejections whose endpoint's entry changed
    /// (or left the ready set) are lifted.
    fn listed(&self, listed: BackendSet, entries: HashMap<String, Entry>) {
        let mut state = self.lock();
        state.ejected.retain(|key, ejection| {
            let same = entries.get(key) == Some(&ejection.entry);
            if !same {
                tracing::info!(endpoint = %key, "its EndpointSlice entry changed: no longer ejected");
            }
            same
        });
        state.listed = listed;
        state.entries = entries;
        self.publish(&state);
    }

    fn eject(self: &Arc<Self>, backend: &Backend) {
        let mut state = self.lock();
        if state.ejected.contains_key(&backend.key) {
            return;
        }
        let Some(entry) = state.entries.get(&backend.key).cloned() else {
            return; // already gone from the slices
        };
        state.ejections += 1;
        let id = state.ejections;
        state.ejected.insert(backend.key.clone(), Ejection { entry, id });
        tracing::warn!(
            executor = %backend.name,
            eject_for_ms = self.eject_for.as_millis(),
            "connect failed: ejected until its EndpointSlice entry changes or the time is up"
        );
        self.publish(&state);
        let (shared, key, until) = (
            Arc::downgrade(self),
            backend.key.clone(),
            Instant::now() + self.eject_for,
        );
        tokio::spawn(readmit_at(shared, key, id, until));
    }
}

/// Lifts ejection `id` of `key` at `until`, unless it was lifted already.
async fn readmit_at(shared: Weak<Shared>, key: String, id: u64, until: Instant) {
    tokio::time::sleep_until(until).await;
    let Some(shared) = shared.upgrade() else { return };
    let mut state = shared.lock();
    if state.ejected.get(&key).is_some_and(|e| e.id == id) {
        state.ejected.remove(&key);
        tracing::info!(endpoint = %key, "ejection time is up: re-admitted");
        shared.publish(&state);
    }
}

impl KubernetesDiscovery {
    /// Starts watching; the set is empty until the first list arrives.
    pub fn spawn(client: kube::Client, config: KubernetesConfig) -> KubernetesDiscovery {
        let (tx, rx) = watch::channel(BackendSet::default());
        let shared = Arc::new(Shared {
            tx,
            eject_for: config.eject_for,
            state: Mutex::new(State::default()),
        });
        let api: Api<EndpointSlice> = Api::namespaced(client, &config.namespace);
        let selector = format!("kubernetes.io/service-name={}", config.service);
        let (store, writer) = reflector::store();
        let events =
            reflector(writer, watcher(api, watcher::Config::default().labels(&selector))).default_backoff();
        let task = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                let mut known: HashMap<String, Arc<Backend>> = HashMap::new();
                futures::pin_mut!(events);
                while let Some(event) = events.next().await {
                    match event {
                        // Mid re-list the store still holds the previous complete
                        // state; publish only at consistent points.
                        Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
                        Ok(_) => {
                            let (listed, entries) =
                                listed_from(&store.state(), &config.port_name, &mut known);
                            shared.listed(listed, entries);
                        }
                        Err(error) => tracing::warn!(%error, "EndpointSlice watch failed; retrying"),
                    }
                }
            }
        });
        KubernetesDiscovery { shared, rx, task }
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

    fn connect_failed(&self, backend: &Backend) {
        self.shared.eject(backend);
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
    listed_from(slices, port_name, known).0
}

/// [`backends_from`], and each ready endpoint's [`Entry`] by key.
fn listed_from(
    slices: &[Arc<EndpointSlice>],
    port_name: &str,
    known: &mut HashMap<String, Arc<Backend>>,
) -> (BackendSet, HashMap<String, Entry>) {
    let mut entries = HashMap::new();
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
            entries.insert(key, (endpoint.conditions.clone(), endpoint.target_ref.clone()));
        }
    }
    known.retain(|k, _| seen.contains(k));
    ready.sort_by(|a, b| a.key.cmp(&b.key));
    let set = BackendSet {
        ready: ready.into(),
        unready,
    };
    (set, entries)
}
