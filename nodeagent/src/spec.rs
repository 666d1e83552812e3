//! Which parts of a pod spec this agent honours; the rest is refused up front.
//!
//! One container per pod. A pod that asks for something runbox-node cannot do is not half-run: it
//! fails at admission (phase `Failed`, reason `Unsupported`) with a message
//! naming the field, as a kubelet fails a pod it cannot admit. Refused:
//! init containers, volume mounts (so set `automountServiceAccountToken:
//! false`), `envFrom` and `valueFrom` other than `fieldRef`, `exec`/`tcpSocket`/
//! `grpc` probes and hooks, startup probes, `postStart` hooks, privileged
//! containers, `hostPID`/`hostIPC`, `sysctls`, `Localhost` seccomp profiles,
//! `runAsGroup` without `runAsUser`, and `runAsNonRoot` contradicted by
//! `runAsUser: 0`. Accepted but not enforced beyond what podman's flags do:
//! resource requests (only limits become `--memory`/`--cpus`),
//! `ephemeral-storage`, topology spread, tolerations (the scheduler's business).

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, Probe};

/// Why the pod cannot run here, if it cannot.
pub fn check(pod: &Pod) -> Result<(), String> {
    let Some(spec) = pod.spec.as_ref() else {
        return Err("pod has no spec".into());
    };
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err("init containers are not supported by runbox-node".into());
    }
    if spec.host_pid == Some(true) || spec.host_ipc == Some(true) {
        return Err("hostPID/hostIPC are not supported by runbox-node".into());
    }
    if let Some(sc) = &spec.security_context {
        if sc.sysctls.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err("sysctls are not supported by runbox-node".into());
        }
        if sc
            .seccomp_profile
            .as_ref()
            .is_some_and(|p| p.type_ == "Localhost")
        {
            return Err("Localhost seccomp profiles are not supported by runbox-node".into());
        }
    }
    if spec.containers.is_empty() {
        return Err("pod has no containers".into());
    }
    if spec.containers.len() > 1 {
        return Err("pods of more than one container are not supported by runbox-node".into());
    }
    for c in &spec.containers {
        check_container(pod, c).map_err(|e| format!("container {}: {e}", c.name))?;
    }
    Ok(())
}

fn check_container(pod: &Pod, c: &Container) -> Result<(), String> {
    if c.volume_mounts.as_ref().is_some_and(|v| !v.is_empty()) || c.volume_devices.is_some() {
        return Err("volume mounts are not supported by runbox-node \
                    (set automountServiceAccountToken: false)"
            .into());
    }
    if c.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err("envFrom is not supported by runbox-node".into());
    }
    for var in c.env.iter().flatten() {
        if let Some(from) = &var.value_from
            && from.field_ref.is_none()
        {
            return Err(format!(
                "env {}: only valueFrom.fieldRef is supported by runbox-node",
                var.name
            ));
        }
    }
    if c.startup_probe.is_some() {
        return Err("startup probes are not supported by runbox-node".into());
    }
    for (kind, probe) in [("readiness", &c.readiness_probe), ("liveness", &c.liveness_probe)] {
        if let Some(p) = probe {
            check_probe(p).map_err(|e| format!("{kind} probe: {e}"))?;
        }
    }
    if let Some(lc) = &c.lifecycle {
        if lc.post_start.is_some() {
            return Err("postStart hooks are not supported by runbox-node".into());
        }
        if let Some(h) = &lc.pre_stop {
            check_hook(h).map_err(|e| format!("preStop: {e}"))?;
        }
    }
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    if sc.and_then(|s| s.privileged) == Some(true) {
        return Err("privileged containers are not supported by runbox-node".into());
    }
    if sc
        .and_then(|s| s.seccomp_profile.as_ref())
        .is_some_and(|p| p.type_ == "Localhost")
    {
        return Err("Localhost seccomp profiles are not supported by runbox-node".into());
    }
    let user = sc
        .and_then(|s| s.run_as_user)
        .or(pod_sc.and_then(|s| s.run_as_user));
    let group = sc
        .and_then(|s| s.run_as_group)
        .or(pod_sc.and_then(|s| s.run_as_group));
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or(pod_sc.and_then(|s| s.run_as_non_root));
    if group.is_some() && user.is_none() {
        return Err("runAsGroup without runAsUser is not supported by runbox-node".into());
    }
    if non_root == Some(true) && user == Some(0) {
        return Err("runAsNonRoot is set but runAsUser is 0".into());
    }
    if let Some(limits) = c.resources.as_ref().and_then(|r| r.limits.as_ref()) {
        for (name, q) in limits {
            let parsed = match name.as_str() {
                "memory" => crate::quantity::bytes(&q.0).map(|_| ()),
                "cpu" => crate::quantity::millicores(&q.0).map(|_| ()),
                _ => Ok(()),
            };
            parsed.map_err(|e| format!("limits.{name}: {e}"))?;
        }
    }
    Ok(())
}

fn check_probe(p: &Probe) -> Result<(), String> {
    if p.exec.is_some() || p.tcp_socket.is_some() || p.grpc.is_some() {
        return Err("only httpGet probes are supported by runbox-node".into());
    }
    match &p.http_get {
        Some(get)
            if get
                .scheme
                .as_deref()
                .is_some_and(|s| !s.eq_ignore_ascii_case("HTTP")) =>
        {
            Err("only scheme HTTP is supported by runbox-node".into())
        }
        Some(_) => Ok(()),
        None => Err("the probe has no handler".into()),
    }
}

fn check_hook(h: &LifecycleHandler) -> Result<(), String> {
    if h.exec.is_some() || h.tcp_socket.is_some() {
        return Err("only sleep and httpGet hooks are supported by runbox-node".into());
    }
    if h.sleep.is_none() && h.http_get.is_none() {
        return Err("the hook has no handler".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executor_pod_is_supported() {
        assert_eq!(check(&crate::podman::tests::executor_pod()), Ok(()));
    }

    #[test]
    fn unsupported_fields_are_named() {
        let mut pod = crate::podman::tests::executor_pod();
        let spec = pod.spec.as_mut().unwrap();
        spec.containers[0].volume_mounts = Some(vec![Default::default()]);
        let err = check(&pod).unwrap_err();
        assert!(
            err.starts_with("container executor: volume mounts are not supported"),
            "{err}"
        );

        let mut pod = crate::podman::tests::executor_pod();
        let spec = pod.spec.as_mut().unwrap();
        spec.init_containers = Some(vec![Container {
            name: "init".into(),
            ..Default::default()
        }]);
        assert_eq!(
            check(&pod).unwrap_err(),
            "init containers are not supported by runbox-node"
        );

        let mut pod = crate::podman::tests::executor_pod();
        let probe = pod.spec.as_mut().unwrap().containers[0]
            .readiness_probe
            .as_mut()
            .unwrap();
        probe.http_get = None;
        probe.exec = Some(Default::default());
        assert_eq!(
            check(&pod).unwrap_err(),
            "container executor: readiness probe: only httpGet probes are supported by runbox-node"
        );
    }
}
