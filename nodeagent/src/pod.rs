//! One pod's life on this node, as a kubelet lives it.
//!
//! Admit (or fail with `Unsupported`), take an address, start the container,
//! report `Running` with the pod IP, probe: the pod is `Ready` only after
//! its readiness probe has passed (never a readiness not seen), and stops
//! being ready when it fails `failureThreshold` times in a row. A liveness
//! failure or an exit restarts the container (`restartPolicy: Always`) with
//! the kubelet's back-off, 10 s doubling to 5 min. When the pod is deleted:
//! the `preStop` hook, then SIGTERM, then SIGKILL when the grace period
//! (counted from the deletion, hook included) runs out; the container is
//! removed, the address released, and the pod object finally deleted
//! (grace 0, on its UID) as the kubelet does once its containers are gone.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::file_sd::{self, FileSd};
use crate::ipam::Ipam;
use crate::node::now_seconds;
use crate::podman::Podman;
use crate::probe::{self, Prober, Timing};
use crate::{env, spec};

/// What every pod task shares.
pub struct Node {
    pub client: kube::Client,
    pub name: String,
    pub host_ip: String,
    pub podman: Podman,
    pub ipam: Mutex<Ipam>,
    pub file_sd: FileSd,
    pub probes: reqwest::Client,
    pub log_dir: Option<std::path::PathBuf>,
}

/// The latest word on a pod from the API server.
#[derive(Debug, Clone)]
pub struct Update {
    pub pod: Pod,
    /// The object is gone from the API (deleted without us, or force-deleted).
    pub gone: bool,
}

impl Update {
    fn terminating(&self) -> bool {
        self.gone || self.pod.metadata.deletion_timestamp.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Readiness,
    Liveness,
}

/// What is reported in the pod's status.
#[derive(Debug)]
struct Reported {
    phase: &'static str,
    ip: String,
    started: String,
    container_id: String,
    running_since: Option<String>,
    waiting: Option<(String, String)>,
    last_exit: Option<Value>,
    restarts: u32,
    ready: bool,
    ready_since: String,
    message: Option<(String, String)>,
}

/// Waits for a change on the pod's channel that means it is going
/// (deleted, or the channel closed: the agent shutting down) and returns
/// the pod as last seen. Cancel-safe, like `changed()`.
async fn deleted(updates: &mut watch::Receiver<Update>) -> Update {
    loop {
        let open = updates.changed().await.is_ok();
        let update = updates.borrow_and_update();
        if !open || update.terminating() {
            return update.clone();
        }
    }
}

/// Runs the pod of the first update until it is deleted and cleaned up.
pub async fn run(node: Arc<Node>, mut updates: watch::Receiver<Update>) {
    let pod = updates.borrow().pod.clone();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), &namespace);
    let span = tracing::info_span!("pod", %namespace, %name);
    tracing::info!(parent: &span, %uid, "pod bound to this node");

    let mut life = Life {
        node: node.clone(),
        pods: pods.clone(),
        name: name.clone(),
        uid: uid.clone(),
        reported: Reported {
            phase: "Pending",
            ip: String::new(),
            started: now_seconds(),
            container_id: String::new(),
            running_since: None,
            waiting: None,
            last_exit: None,
            restarts: 0,
            ready: false,
            ready_since: now_seconds(),
            message: None,
        },
        container: pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first().cloned())
            .unwrap_or_default(),
        span: span.clone(),
    };

    if !updates.borrow().terminating() {
        match life.start(&pod).await {
            Ok(id) => life.supervise(&pod, &id, &mut updates).await,
            Err(Failure { reason, message }) => {
                tracing::warn!(parent: &span, %reason, %message, "pod cannot run");
                life.reported.phase = "Failed";
                life.reported.message = Some((reason, message));
                life.report().await;
                // A failed pod stays until it is deleted, as on a kubelet.
                while !updates.borrow().terminating() {
                    if updates.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    node.file_sd.set(&uid, None);
    node.ipam
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .release(&uid);
    if !updates.borrow().gone {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match pods.delete(&name, &params).await {
            Ok(_) => tracing::info!(parent: &span, "pod removed"),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(parent: &span, error = %e, "deleting the pod object failed"),
        }
    }
}

struct Failure {
    reason: String,
    message: String,
}

fn failure(reason: &str, message: impl std::fmt::Display) -> Failure {
    Failure {
        reason: reason.into(),
        message: message.to_string(),
    }
}

struct Life {
    node: Arc<Node>,
    pods: Api<Pod>,
    name: String,
    uid: String,
    reported: Reported,
    container: Container,
    span: tracing::Span,
}

impl Life {
    /// Admission, address, environment, `podman run`; the container ID.
    async fn start(&mut self, pod: &Pod) -> Result<String, Failure> {
        spec::check(pod).map_err(|m| failure("Unsupported", m))?;
        let wanted = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_ref())
            .and_then(|ip| ip.parse().ok());
        let ip = self
            .node
            .ipam
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allocate(&self.uid, wanted)
            .map_err(|e| failure("OutOfAddresses", e))?;
        self.reported.ip = ip.to_string();
        let fields = env::PodFields {
            pod,
            pod_ip: ip.to_string(),
            host_ip: self.node.host_ip.clone(),
        };
        let vars = env::resolve(&self.container, &fields).map_err(|e| failure("Unsupported", e))?;
        let args = crate::podman::run_args(pod, &self.container, &vars, &self.node.name)
            .map_err(|m| failure("Unsupported", m))?;
        // A container of the same name is a leftover of an earlier agent.
        let _ = self
            .node
            .podman
            .remove(&crate::podman::container_name(pod, &self.container))
            .await;
        let id = self
            .node
            .podman
            .run(&args)
            .await
            .map_err(|e| failure("CreateContainerError", format!("{e:#}")))?;
        tracing::info!(parent: &self.span, %ip, container = %&id[..12.min(id.len())], "container started");
        self.reported.phase = "Running";
        self.reported.container_id = id.clone();
        self.reported.running_since = Some(now_seconds());
        self.report().await;
        self.node
            .file_sd
            .set(&self.uid, file_sd::Target::of(pod, &self.reported.ip));
        Ok(id)
    }

    /// Probes, restarts and finally terminates the running container.
    async fn supervise(&mut self, pod: &Pod, id: &str, updates: &mut watch::Receiver<Update>) {
        let (tx, mut results) = mpsc::channel(16);
        let ip = self.reported.ip.clone();
        let mut guards = Vec::new();
        let (mut readiness_timing, mut liveness_timing) = (None, None);
        for (kind, p) in [
            (Kind::Readiness, &self.container.readiness_probe),
            (Kind::Liveness, &self.container.liveness_probe),
        ] {
            let Some(p) = p else { continue };
            let Some(get) = &p.http_get else { continue };
            let timing = Timing::of(p);
            match probe::target(get, &self.container, &ip) {
                Ok(target) => {
                    guards.push(probe::spawn(
                        self.node.probes.clone(),
                        target,
                        timing,
                        kind,
                        tx.clone(),
                    ));
                    match kind {
                        Kind::Readiness => readiness_timing = Some(timing),
                        Kind::Liveness => liveness_timing = Some(timing),
                    }
                }
                Err(e) => tracing::warn!(parent: &self.span, error = %e, ?kind, "probe not run"),
            }
        }
        if readiness_timing.is_none() {
            // No readiness probe: ready once running, as in Kubernetes.
            self.set_ready(true).await;
        }
        let mut backoff = Duration::from_secs(10);
        // Left only by the pod's deletion, running or backing off.
        let update = 'restarts: loop {
            // Each start of the container begins from the initial results.
            let mut readiness = readiness_timing.map(|t| Prober::new(t, false));
            let mut liveness = liveness_timing.map(|t| Prober::new(t, true));
            let podman = self.node.podman.clone();
            let exited = podman.wait(id);
            tokio::pin!(exited);
            let code = loop {
                tokio::select! {
                    update = deleted(updates) => break 'restarts update,
                    Some((kind, ok)) = results.recv() => match kind {
                        Kind::Readiness => {
                            if let Some(ready) = readiness.as_mut().and_then(|p| p.observe(ok)) {
                                self.set_ready(ready).await;
                            }
                        }
                        Kind::Liveness => {
                            if liveness.as_mut().and_then(|p| p.observe(ok)) == Some(false) {
                                tracing::warn!(parent: &self.span, "liveness probe failed: restarting the container");
                                let grace = grace_period(pod);
                                if let Err(e) = self.node.podman.stop(id, grace).await {
                                    tracing::warn!(parent: &self.span, error = %format!("{e:#}"), "stopping failed");
                                }
                            }
                        }
                    },
                    code = &mut exited => break code,
                }
            };
            let code = code.unwrap_or(-1);
            tracing::warn!(parent: &self.span, code, "container exited");
            self.reported.last_exit = Some(json!({ "terminated": {
                "exitCode": code,
                "reason": if code == 0 { "Completed" } else { "Error" },
                "startedAt": self.reported.running_since,
                "finishedAt": now_seconds(),
                "containerID": format!("podman://{id}"),
            }}));
            self.reported.running_since = None;
            self.reported.waiting = Some((
                "CrashLoopBackOff".into(),
                format!("back-off {backoff:?} restarting the container"),
            ));
            self.node.file_sd.set(&self.uid, None);
            self.set_ready(false).await;
            // Back off, still listening for the deletion.
            let wake = tokio::time::sleep(backoff);
            tokio::pin!(wake);
            loop {
                tokio::select! {
                    update = deleted(updates) => break 'restarts update,
                    _ = results.recv() => {}
                    () = &mut wake => break,
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(300));
            if let Err(e) = self.node.podman.start(id).await {
                tracing::warn!(parent: &self.span, error = %format!("{e:#}"), "restarting the container failed");
                continue;
            }
            self.reported.restarts += 1;
            self.reported.waiting = None;
            self.reported.running_since = Some(now_seconds());
            self.report().await;
            self.node
                .file_sd
                .set(&self.uid, file_sd::Target::of(pod, &self.reported.ip));
        };
        drop(guards);
        self.terminate(pod, &update, id).await;
    }

    /// preStop, SIGTERM, SIGKILL at the end of the grace period, removal.
    async fn terminate(&mut self, pod: &Pod, update: &Update, id: &str) {
        let grace = update
            .pod
            .metadata
            .deletion_grace_period_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or_else(|| grace_period(pod));
        let deadline = Instant::now() + grace;
        tracing::info!(parent: &self.span, ?grace, "terminating");
        if let Some(hook) = self
            .container
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
        {
            let run_hook = async {
                if let Some(sleep) = &hook.sleep {
                    tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
                } else if let Some(get) = &hook.http_get
                    && let Ok(target) = probe::target(get, &self.container, &self.reported.ip)
                {
                    probe::check(&self.node.probes, &target, grace).await;
                }
            };
            let _ = tokio::time::timeout_at(deadline.into(), run_hook).await;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        tracing::info!(parent: &self.span, ?left, "SIGTERM (SIGKILL when the grace period ends)");
        if let Err(e) = self.node.podman.stop(id, left).await {
            tracing::warn!(parent: &self.span, error = %format!("{e:#}"), "stopping failed");
        }
        self.node.file_sd.set(&self.uid, None);
        if let Some(dir) = &self.node.log_dir
            && let Ok(logs) = self.node.podman.logs(id).await
        {
            let file = dir.join(format!(
                "{}_{}.log",
                self.name,
                &self.uid[..8.min(self.uid.len())]
            ));
            let _ = std::fs::write(file, logs);
        }
        if let Err(e) = self.node.podman.remove(id).await {
            tracing::warn!(parent: &self.span, error = %format!("{e:#}"), "removing the container failed");
        }
        tracing::info!(parent: &self.span, "container removed");
    }

    async fn set_ready(&mut self, ready: bool) {
        if self.reported.ready != ready {
            tracing::info!(parent: &self.span, ready, "readiness changed");
            self.reported.ready = ready;
            self.reported.ready_since = now_seconds();
        }
        self.report().await;
    }

    /// Merge-patches the whole status this agent owns.
    async fn report(&self) {
        let status = status_of(&self.reported, &self.container, &self.node.host_ip);
        let patch = json!({ "status": status });
        if let Err(e) = self
            .pods
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(parent: &self.span, error = %e, "reporting the pod status failed");
        }
    }
}

/// `terminationGracePeriodSeconds`, 30 s if unset.
fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(secs.max(0) as u64)
}

fn status_of(r: &Reported, container: &Container, host_ip: &str) -> Value {
    let condition = |kind: &str, ok: bool, since: &str| json!({ "type": kind, "status": if ok { "True" } else { "False" }, "lastTransitionTime": since });
    let running = r.phase == "Running";
    let mut conditions = vec![
        condition("PodScheduled", true, &r.started),
        condition("PodReadyToStartContainers", running, &r.started),
        condition("Initialized", true, &r.started),
        condition("ContainersReady", r.ready, &r.ready_since),
        condition("Ready", r.ready, &r.ready_since),
    ];
    if let Some((reason, message)) = &r.message {
        for c in &mut conditions[3..] {
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
    }
    let state = match (&r.running_since, &r.waiting) {
        (Some(since), _) => json!({ "running": { "startedAt": since } }),
        (None, Some((reason, message))) => json!({ "waiting": { "reason": reason, "message": message } }),
        (None, None) => {
            json!({ "waiting": { "reason": r.message.as_ref().map_or("ContainerCreating", |m| m.0.as_str()) } })
        }
    };
    let mut status = json!({
        "phase": r.phase,
        "hostIP": host_ip,
        "hostIPs": [{ "ip": host_ip }],
        "startTime": r.started,
        "conditions": conditions,
        "containerStatuses": [{
            "name": container.name,
            "image": container.image.clone().unwrap_or_default(),
            "imageID": "",
            "containerID": if r.container_id.is_empty() { Value::Null } else { json!(format!("podman://{}", r.container_id)) },
            "ready": r.ready,
            "started": r.running_since.is_some(),
            "restartCount": r.restarts,
            "state": state,
            "lastState": r.last_exit.clone().unwrap_or(json!({})),
        }],
    });
    if !r.ip.is_empty() {
        status["podIP"] = json!(r.ip);
        status["podIPs"] = json!([{ "ip": r.ip }]);
    }
    if let Some((reason, message)) = &r.message {
        status["reason"] = json!(reason);
        status["message"] = json!(message);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported() -> Reported {
        Reported {
            phase: "Running",
            ip: "198.18.0.2".into(),
            started: "2026-12-03T10:00:00Z".into(),
            container_id: "abc".into(),
            running_since: Some("2026-12-03T10:00:01Z".into()),
            waiting: None,
            last_exit: None,
            restarts: 0,
            ready: false,
            ready_since: "2026-12-03T10:00:00Z".into(),
            message: None,
        }
    }

    fn condition<'a>(s: &'a Value, kind: &str) -> &'a Value {
        s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .unwrap()
    }

    #[test]
    fn a_running_pod_is_not_ready_until_its_probe_says_so() {
        let c = Container {
            name: "executor".into(),
            image: Some("runbox/executor:0.1.0".into()),
            ..Default::default()
        };
        let mut r = reported();
        let s = status_of(&r, &c, "198.18.0.1");
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "198.18.0.2");
        assert_eq!(s["podIPs"][0]["ip"], "198.18.0.2");
        assert_eq!(condition(&s, "Ready")["status"], "False");
        assert_eq!(s["containerStatuses"][0]["ready"], false);
        assert_eq!(s["containerStatuses"][0]["containerID"], "podman://abc");
        r.ready = true;
        let s = status_of(&r, &c, "198.18.0.1");
        assert_eq!(condition(&s, "Ready")["status"], "True");
        assert_eq!(condition(&s, "ContainersReady")["status"], "True");
        // The scheduler's condition is kept (a merge patch replaces the list).
        assert_eq!(condition(&s, "PodScheduled")["status"], "True");
    }

    #[test]
    fn a_refused_pod_says_why() {
        let c = Container {
            name: "x".into(),
            ..Default::default()
        };
        let mut r = reported();
        r.phase = "Failed";
        r.ip.clear();
        r.running_since = None;
        r.message = Some((
            "Unsupported".into(),
            "init containers are not supported by runbox-node".into(),
        ));
        let s = status_of(&r, &c, "198.18.0.1");
        assert_eq!(s["phase"], "Failed");
        assert_eq!(s["reason"], "Unsupported");
        assert!(s.get("podIP").is_none());
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "Unsupported"
        );
        assert_eq!(
            condition(&s, "Ready")["message"],
            "init containers are not supported by runbox-node"
        );
    }

    #[test]
    fn the_grace_period_defaults_to_30_seconds() {
        let mut pod = crate::podman::tests::executor_pod();
        assert_eq!(grace_period(&pod), Duration::from_secs(60));
        pod.spec.as_mut().unwrap().termination_grace_period_seconds = None;
        assert_eq!(grace_period(&pod), Duration::from_secs(30));
    }
}
