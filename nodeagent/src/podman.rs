//! A pod's container as a `podman run`, and the few podman calls the agent makes.
//!
//! The container shares the host network (`--network host`) and binds the
//! pod's own address (see [`crate::ipam`]); the pod spec's securityContext
//! becomes podman's flags one for one: `readOnlyRootFilesystem` →
//! `--read-only` (with no tmpfs added, as in Kubernetes), `capabilities` →
//! `--cap-drop`/`--cap-add`, `allowPrivilegeEscalation: false` →
//! `no-new-privileges`, `runAsUser`/`runAsGroup` → `--user`, seccomp
//! `RuntimeDefault` → podman's default profile, `Unconfined` → none. Limits
//! become `--memory` and `--cpus`. Images are never pulled (`--pull never`):
//! there is no registry, so an image must be in local storage.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};

/// The label every container of this agent carries: the pod's UID.
pub const POD_UID_LABEL: &str = "io.runbox.pod-uid";
/// The label naming the node agent that started the container.
pub const NODE_LABEL: &str = "io.runbox.node";

/// Longest a podman call other than `wait` may take (`stop`: on top of
/// the grace period).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The arguments of `podman run` for `container` of `pod` at `ip`.
pub fn run_args(
    pod: &Pod,
    container: &Container,
    env: &[(String, String)],
    node: &str,
) -> Result<Vec<String>, String> {
    let meta = &pod.metadata;
    let uid = meta.uid.clone().unwrap_or_default();
    let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
    let mut args: Vec<String> = vec![
        "run".into(),
        "--detach".into(),
        "--name".into(),
        container_name(pod, container),
        "--label".into(),
        format!("{POD_UID_LABEL}={uid}"),
        "--label".into(),
        format!("{NODE_LABEL}={node}"),
        "--network".into(),
        "host".into(),
        "--pull".into(),
        "never".into(),
    ];
    let pod_sc = spec.security_context.as_ref();
    let sc = container.security_context.clone().unwrap_or_default();
    let user = sc.run_as_user.or(pod_sc.and_then(|s| s.run_as_user));
    let group = sc.run_as_group.or(pod_sc.and_then(|s| s.run_as_group));
    match (user, group) {
        (Some(u), Some(g)) => args.extend(["--user".into(), format!("{u}:{g}")]),
        (Some(u), None) => args.extend(["--user".into(), u.to_string()]),
        _ => {}
    }
    security_flags(
        &sc,
        pod_sc
            .and_then(|s| s.seccomp_profile.as_ref())
            .map(|p| p.type_.as_str()),
        &mut args,
    );
    if let Some(limits) = container.resources.as_ref().and_then(|r| r.limits.as_ref()) {
        if let Some(q) = limits.get("memory") {
            let bytes = crate::quantity::bytes(&q.0).map_err(|e| format!("limits.memory: {e}"))?;
            args.extend(["--memory".into(), bytes.to_string()]);
        }
        if let Some(q) = limits.get("cpu") {
            let milli = crate::quantity::millicores(&q.0).map_err(|e| format!("limits.cpu: {e}"))?;
            args.extend(["--cpus".into(), format!("{:.3}", milli as f64 / 1000.0)]);
        }
    }
    if let Some(dir) = &container.working_dir {
        args.extend(["--workdir".into(), dir.clone()]);
    }
    for (name, value) in env {
        args.extend(["--env".into(), format!("{name}={value}")]);
    }
    if let Some(command) = container.command.as_ref().filter(|c| !c.is_empty()) {
        let expanded = crate::env::expand_all(command, env);
        let json = serde_json::to_string(&expanded).map_err(|e| e.to_string())?;
        args.extend(["--entrypoint".into(), json]);
    }
    let image = container.image.clone().ok_or("the container has no image")?;
    args.push(image);
    if let Some(extra) = &container.args {
        args.extend(crate::env::expand_all(extra, env));
    }
    Ok(args)
}

fn security_flags(sc: &SecurityContext, pod_seccomp: Option<&str>, args: &mut Vec<String>) {
    if sc.read_only_root_filesystem == Some(true) {
        args.extend(["--read-only".into(), "--read-only-tmpfs=false".into()]);
    }
    if sc.allow_privilege_escalation == Some(false) {
        args.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    if let Some(caps) = &sc.capabilities {
        for c in caps.drop.iter().flatten() {
            args.push(format!("--cap-drop={c}"));
        }
        for c in caps.add.iter().flatten() {
            args.push(format!("--cap-add={c}"));
        }
    }
    let seccomp = sc
        .seccomp_profile
        .as_ref()
        .map(|p| p.type_.as_str())
        .or(pod_seccomp);
    if seccomp == Some("Unconfined") {
        args.extend(["--security-opt".into(), "seccomp=unconfined".into()]);
    }
}

/// `k8s_<container>_<pod>_<namespace>_<uid>`, as the dockershim named them.
pub fn container_name(pod: &Pod, container: &Container) -> String {
    let meta = &pod.metadata;
    format!(
        "k8s_{}_{}_{}_{}",
        container.name,
        meta.name.as_deref().unwrap_or_default(),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default()
    )
}

/// The podman binary (with `CONTAINERS_CONF` from the environment).
#[derive(Debug, Clone)]
pub struct Podman {
    pub bin: PathBuf,
}

impl Podman {
    async fn call(&self, args: &[&str]) -> Result<String> {
        self.call_within(args, CALL_TIMEOUT).await
    }

    /// Output of `podman <args>` within `limit` (killed past it).
    async fn output(&self, args: &[&str], limit: Duration) -> Result<std::process::Output> {
        let run = tokio::process::Command::new(&self.bin)
            .args(args)
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(limit, run)
            .await
            .with_context(|| format!("podman {} took over {limit:?}", args.join(" ")))?
            .with_context(|| format!("running {}", self.bin.display()))
    }

    async fn call_within(&self, args: &[&str], limit: Duration) -> Result<String> {
        let out = self.output(args, limit).await?;
        if !out.status.success() {
            bail!(
                "podman {} failed ({}): {}",
                args.first().copied().unwrap_or_default(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Starts a container; returns its ID.
    pub async fn run(&self, args: &[String]) -> Result<String> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.call(&args).await
    }

    /// Starts an exited container again.
    pub async fn start(&self, id: &str) -> Result<()> {
        self.call(&["start", id]).await.map(drop)
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let secs = grace.as_secs_f64().ceil().to_string();
        // The grace period is podman's to wait; the bound comes on top.
        self.call_within(&["stop", "--time", &secs, id], grace + CALL_TIMEOUT)
            .await
            .map(drop)
    }

    /// Removes a container, killing it if it still runs.
    pub async fn remove(&self, id: &str) -> Result<()> {
        self.call(&["rm", "--force", "--time", "0", "--ignore", id])
            .await
            .map(drop)
    }

    /// Waits for the container to exit; its exit code.
    pub async fn wait(&self, id: &str) -> Result<i32> {
        let out = tokio::process::Command::new(&self.bin)
            .args(["wait", id])
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("running {}", self.bin.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse()
            .with_context(|| format!("podman wait {id} said {text:?}"))
    }

    /// The container's output so far (stdout and stderr).
    pub async fn logs(&self, id: &str) -> Result<Vec<u8>> {
        let out = self.output(&["logs", id], CALL_TIMEOUT).await?;
        let mut all = out.stdout;
        all.extend_from_slice(&out.stderr);
        Ok(all)
    }

    /// IDs of the containers labelled with `label=value`, running or not.
    pub async fn labelled(&self, label: &str, value: &str) -> Result<Vec<String>> {
        let filter = format!("label={label}={value}");
        let out = self
            .call(&["ps", "--all", "--quiet", "--no-trunc", "--filter", &filter])
            .await?;
        Ok(out.lines().map(str::to_owned).filter(|l| !l.is_empty()).collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use k8s_openapi::api::apps::v1::Deployment;

    use super::*;

    /// A pod of the executor Deployment as the API server would bind it.
    pub(crate) fn executor_pod() -> Pod {
        let deployment: Deployment =
            serde_json::from_str(include_str!("testdata/executor-deployment.json")).unwrap();
        let template = deployment.spec.unwrap().template;
        let mut pod = Pod {
            metadata: template.metadata.unwrap_or_default(),
            spec: template.spec,
            status: None,
        };
        pod.metadata.name = Some("executor-7d9c-abcde".into());
        pod.metadata.namespace = Some("runbox".into());
        pod.metadata.uid = Some("0f1e2d3c-aaaa-bbbb-cccc-1234567890ab".into());
        pod.spec.as_mut().unwrap().node_name = Some("n1".into());
        pod
    }

    fn has_pair(args: &[String], flag: &str, value: &str) -> bool {
        args.windows(2).any(|w| w[0] == flag && w[1] == value)
    }

    #[test]
    fn the_executor_runs_hardened_on_the_host_network() {
        let pod = executor_pod();
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let env = vec![("EXECUTOR_LISTEN".to_owned(), "198.18.0.2:8080".to_owned())];
        let args = run_args(&pod, container, &env, "n1").unwrap();
        assert_eq!(&args[..2], ["run", "--detach"]);
        assert!(has_pair(&args, "--network", "host"));
        assert!(has_pair(&args, "--pull", "never"));
        assert!(has_pair(&args, "--user", "65532:65532"));
        assert!(has_pair(&args, "--security-opt", "no-new-privileges"));
        assert!(args.contains(&"--read-only".to_owned()));
        assert!(args.contains(&"--read-only-tmpfs=false".to_owned()));
        assert!(args.contains(&"--cap-drop=ALL".to_owned()));
        assert!(has_pair(
            &args,
            "--label",
            "io.runbox.pod-uid=0f1e2d3c-aaaa-bbbb-cccc-1234567890ab"
        ));
        assert!(has_pair(&args, "--env", "EXECUTOR_LISTEN=198.18.0.2:8080"));
        // limits: memory 1664Mi, cpu 2.
        assert!(has_pair(&args, "--memory", &(1664u64 << 20).to_string()));
        assert!(has_pair(&args, "--cpus", "2.000"));
        // No seccomp flag: RuntimeDefault is podman's default profile.
        assert!(!args.iter().any(|a| a.starts_with("seccomp=")));
        assert_eq!(args.last().unwrap(), "runbox/executor:0.1.0");
        assert_eq!(
            container_name(&pod, container),
            "k8s_executor_executor-7d9c-abcde_runbox_0f1e2d3c-aaaa-bbbb-cccc-1234567890ab"
        );
    }

    #[test]
    fn command_and_args_are_expanded_and_placed_around_the_image() {
        let mut pod = executor_pod();
        let c = &mut pod.spec.as_mut().unwrap().containers[0];
        c.command = Some(vec!["/bin/run".into(), "--at=$(ADDR)".into()]);
        c.args = Some(vec!["$(ADDR)".into(), "$(UNKNOWN)".into()]);
        c.security_context.as_mut().unwrap().seccomp_profile =
            Some(k8s_openapi::api::core::v1::SeccompProfile {
                type_: "Unconfined".into(),
                ..Default::default()
            });
        let c = c.clone();
        let env = vec![("ADDR".to_owned(), "198.18.0.9".to_owned())];
        let args = run_args(&pod, &c, &env, "n1").unwrap();
        assert!(has_pair(
            &args,
            "--entrypoint",
            r#"["/bin/run","--at=198.18.0.9"]"#
        ));
        assert!(has_pair(&args, "--security-opt", "seccomp=unconfined"));
        let image = args.iter().position(|a| a == "runbox/executor:0.1.0").unwrap();
        assert_eq!(&args[image + 1..], ["198.18.0.9", "$(UNKNOWN)"]);
    }
}
