//! runbox-node: a small kubelet stand-in that runs a node's pods with podman.
//!
//! It registers a Node (and keeps its Lease), watches the pods bound to it
//! (`spec.nodeName`), runs each one's container with podman on an address of
//! its own from `--pod-cidr` (see [`ipam`]), reports the pod IP and the
//! readiness its probe has seen, terminates deleted pods like a kubelet
//! (preStop, SIGTERM, SIGKILL after the grace period), and writes the
//! scrape targets of its pods for Prometheus' `file_sd`. It exists so the
//! end-to-end test (`cargo xtask e2e`) runs the project's manifests on a
//! real control plane on one machine without a kubelet, a CRI runtime or a
//! CNI; it is not a production kubelet (no volumes, no exec, no networks of
//! pods' own: see [`spec`] for what a pod may ask).

mod env;
mod file_sd;
mod ipam;
mod node;
mod pod;
mod podman;
mod probe;
mod quantity;
mod spec;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::Parser;
use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "runbox-node: runs the pods bound to a node with podman, on a local address block"
)]
struct Args {
    /// The Node's name.
    #[arg(long, env = "RUNBOX_NODE_NAME")]
    node_name: String,
    /// The pods' address block: inside 127.0.0.0/8, or a block added to `lo`.
    /// Its first address is the node's own.
    #[arg(long, env = "RUNBOX_NODE_POD_CIDR")]
    pod_cidr: Ipv4Net,
    /// Where to write the pods' scrape targets (Prometheus `file_sd` JSON).
    #[arg(long, env = "RUNBOX_NODE_FILE_SD")]
    file_sd: PathBuf,
    /// Where to keep each removed container's output.
    #[arg(long, env = "RUNBOX_NODE_LOG_DIR")]
    log_dir: Option<PathBuf>,
    /// The podman binary.
    #[arg(long, env = "RUNBOX_NODE_PODMAN", default_value = "podman")]
    podman: PathBuf,
    /// Pods this node takes (its `pods` capacity).
    #[arg(long, env = "RUNBOX_NODE_MAX_PODS", default_value_t = 32)]
    max_pods: u32,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let ipam = ipam::Ipam::new(args.pod_cidr)?;
    let host_ip = std::net::Ipv4Addr::from(u32::from(ipam.net().network()) + 1).to_string();
    let client = kube::Client::try_default()
        .await
        .context("connecting to the API server")?;
    let podman = podman::Podman {
        bin: args.podman.clone(),
    };
    remove_leftovers(&podman, &args.node_name).await;
    if let Some(dir) = &args.log_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let identity = node::Identity {
        name: args.node_name.clone(),
        address: host_ip.clone(),
        pod_cidr: ipam.net().to_string(),
        max_pods: args.max_pods,
    };
    node::register(&client, &identity).await?;
    tracing::info!(node = %identity.name, address = %host_ip, pod_cidr = %identity.pod_cidr, "node registered");
    let heartbeat = tokio::spawn(node::heartbeat(client.clone(), identity));
    let shared = Arc::new(pod::Node {
        client: client.clone(),
        name: args.node_name.clone(),
        host_ip,
        podman: podman.clone(),
        ipam: Mutex::new(ipam),
        file_sd: file_sd::FileSd::create(args.file_sd.clone())
            .with_context(|| format!("writing {}", args.file_sd.display()))?,
        probes: probe::client(),
        log_dir: args.log_dir.clone(),
    });
    let result = tokio::select! {
        r = watch_pods(shared.clone()) => r,
        () = shutdown_signal() => {
            tracing::info!("shutting down: removing this node's containers");
            Ok(())
        }
    };
    heartbeat.abort();
    remove_leftovers(&podman, &args.node_name).await;
    shared.file_sd.clear();
    result
}

/// One task per pod UID, fed the pod's latest state.
struct Running {
    updates: watch::Sender<pod::Update>,
    task: JoinHandle<()>,
}

async fn watch_pods(node: Arc<pod::Node>) -> Result<()> {
    let api: Api<Pod> = Api::all(node.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", node.name));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(event) = events.next().await {
        running.retain(|_, r| !r.task.is_finished());
        match event {
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(pod)) => {
                listed.insert(pod.metadata.uid.clone().unwrap_or_default());
                apply(&node, &mut running, pod, false);
            }
            Ok(watcher::Event::InitDone) => {
                // Pods that vanished while the watch was down.
                for (uid, r) in &running {
                    if !listed.contains(uid) {
                        r.updates.send_modify(|u| u.gone = true);
                    }
                }
            }
            Ok(watcher::Event::Apply(pod)) => apply(&node, &mut running, pod, false),
            Ok(watcher::Event::Delete(pod)) => apply(&node, &mut running, pod, true),
            Err(e) => tracing::warn!(error = %e, "watching pods failed; retrying"),
        }
    }
    anyhow::bail!("the pod watch ended")
}

fn apply(node: &Arc<pod::Node>, running: &mut HashMap<String, Running>, pod: Pod, gone: bool) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if let Some(r) = running.get(&uid) {
        r.updates.send_replace(pod::Update { pod, gone });
        return;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if gone || matches!(phase, Some("Succeeded" | "Failed")) {
        return;
    }
    let (updates, rx) = watch::channel(pod::Update { pod, gone });
    let task = tokio::spawn(pod::run(node.clone(), rx));
    running.insert(uid, Running { updates, task });
}

/// Removes every container this node's agent started.
async fn remove_leftovers(podman: &podman::Podman, node: &str) {
    match podman.labelled(podman::NODE_LABEL, node).await {
        Ok(ids) => {
            for id in ids {
                if let Err(e) = podman.remove(&id).await {
                    tracing::warn!(container = %id, error = %format!("{e:#}"), "removing a container failed");
                }
            }
        }
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "listing this node's containers failed"),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
