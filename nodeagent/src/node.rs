//! The Node object and its heartbeat, as a kubelet keeps them.
//!
//! At start the agent server-side applies its Node (labels, `podCIDR`) and
//! then its status (capacity from this host, the node address, `Ready`).
//! Every [`HEARTBEAT`] it renews its Lease in `kube-node-lease` and re-applies
//! the `Ready` condition, so the node lifecycle controller of
//! kube-controller-manager never marks it `Unknown` and taints it away
//! (its grace period is 50 s).

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

/// How often the Lease and the `Ready` condition are renewed.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// The field manager of everything this agent writes.
pub const MANAGER: &str = "runbox-node";

/// What the agent says about its node.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub address: String,
    pub pod_cidr: String,
    pub max_pods: u32,
}

/// Registers the node (spec, then status).
pub async fn register(client: &kube::Client, id: &Identity) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let params = PatchParams::apply(MANAGER).force();
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": id.name,
            "labels": {
                "kubernetes.io/hostname": id.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch(),
                "node.runbox.dev/agent": "runbox-node",
            },
        },
        "spec": { "podCIDR": id.pod_cidr, "podCIDRs": [id.pod_cidr] },
    });
    nodes
        .patch(&id.name, &params, &Patch::Apply(&node))
        .await
        .with_context(|| format!("registering node {}", id.name))?;
    nodes
        .patch_status(&id.name, &params, &Patch::Apply(status(id)))
        .await
        .with_context(|| format!("reporting the status of node {}", id.name))?;
    Ok(())
}

/// Renews the Lease and the `Ready` condition every [`HEARTBEAT`], forever.
pub async fn heartbeat(client: kube::Client, id: Identity) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let params = PatchParams::apply(MANAGER).force();
    let mut ticks = tokio::time::interval(HEARTBEAT);
    loop {
        ticks.tick().await;
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": { "name": id.name, "namespace": "kube-node-lease" },
            "spec": {
                "holderIdentity": id.name,
                "leaseDurationSeconds": 40,
                "renewTime": now_micro(),
            },
        });
        if let Err(e) = leases.patch(&id.name, &params, &Patch::Apply(&lease)).await {
            tracing::warn!(error = %e, "renewing the node lease failed");
        }
        if let Err(e) = nodes
            .patch_status(&id.name, &params, &Patch::Apply(status(&id)))
            .await
        {
            tracing::warn!(error = %e, "renewing the node status failed");
        }
    }
}

/// The node's status: what this host has, its address, and `Ready`.
fn status(id: &Identity) -> Value {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = memory_kib().map_or_else(|| "1Gi".to_owned(), |k| format!("{k}Ki"));
    let resources = json!({
        "cpu": cpus.to_string(),
        "memory": memory,
        "pods": id.max_pods.to_string(),
        "ephemeral-storage": "20Gi",
    });
    let now = now_seconds();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": id.name },
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [
                { "type": "InternalIP", "address": id.address },
                { "type": "Hostname", "address": id.name },
            ],
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "RunboxNodeReady",
                "message": "runbox-node is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }],
            "nodeInfo": {
                "architecture": arch(),
                "operatingSystem": "linux",
                "kubeletVersion": concat!("v", env!("CARGO_PKG_VERSION"), "-runbox-node"),
                "kubeProxyVersion": "",
                "containerRuntimeVersion": "podman://",
                "kernelVersion": "",
                "osImage": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    })
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `MemTotal` of `/proc/meminfo`, in KiB.
fn memory_kib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&info)
}

fn parse_mem_total(info: &str) -> Option<u64> {
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Now as a Kubernetes `Time` (whole seconds).
pub fn now_seconds() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Now as a Kubernetes `MicroTime`.
fn now_micro() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_in_kib() {
        let info = "MemTotal:       24576000 kB\nMemFree:  100 kB\n";
        assert_eq!(parse_mem_total(info), Some(24_576_000));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn the_status_says_ready_with_the_node_address() {
        let id = Identity {
            name: "n1".into(),
            address: "198.18.0.1".into(),
            pod_cidr: "198.18.0.0/24".into(),
            max_pods: 32,
        };
        let s = status(&id);
        assert_eq!(s["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(s["status"]["conditions"][0]["status"], "True");
        assert_eq!(s["status"]["addresses"][0]["address"], "198.18.0.1");
        assert_eq!(s["status"]["allocatable"]["pods"], "32");
        // Times parse back as RFC 3339.
        let t = s["status"]["conditions"][0]["lastHeartbeatTime"]
            .as_str()
            .unwrap();
        assert!(humantime::parse_rfc3339(t).is_ok(), "{t}");
        assert!(humantime::parse_rfc3339(&now_micro()).is_ok());
    }
}
