//! HTTP probes: readiness and liveness `httpGet`, and the `httpGet` preStop hook.
//!
//! [`Prober`] is the pure threshold state machine a kubelet keeps per probe:
//! a result flips only after `successThreshold` consecutive successes or
//! `failureThreshold` consecutive failures. [`spawn`] runs one probe on its
//! period (after `initialDelaySeconds`) and sends each raw outcome; the
//! container task feeds them to its `Prober`. A success is an answer with a
//! status in 200..=399 within `timeoutSeconds` (redirects are not followed:
//! a 3xx is itself a success, as for a kubelet's probe of another host).
//! `exec`, `tcpSocket`, `grpc` and `scheme: HTTPS` are not supported; the pod
//! is refused with a message saying so (see `plan`).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A probe's timing and thresholds, with the Kubernetes defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(probe: &Probe) -> Self {
        let secs = |v: Option<i32>, default: i32, min: i32| {
            Duration::from_secs(v.unwrap_or(default).max(min) as u64)
        };
        let count = |v: Option<i32>, default: i32| v.unwrap_or(default).max(1) as u32;
        Self {
            initial_delay: secs(probe.initial_delay_seconds, 0, 0),
            period: secs(probe.period_seconds, 10, 1),
            timeout: secs(probe.timeout_seconds, 1, 1),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// Consecutive outcomes against the thresholds. `result` starts at the
/// probe's initial result: not ready for readiness, alive for liveness.
#[derive(Debug, Clone)]
pub struct Prober {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    result: bool,
}

impl Prober {
    pub fn new(timing: Timing, initial: bool) -> Self {
        Self {
            success_threshold: timing.success_threshold,
            failure_threshold: timing.failure_threshold,
            successes: 0,
            failures: 0,
            result: initial,
        }
    }

    #[cfg(test)]
    pub fn result(&self) -> bool {
        self.result
    }

    /// Records one outcome; returns the new result if it changed.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if !self.result && self.successes >= self.success_threshold {
                self.result = true;
                return Some(true);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.result && self.failures >= self.failure_threshold {
                self.result = false;
                return Some(false);
            }
        }
        None
    }
}

/// Where an `httpGet` goes: `http://<host or pod IP>:<port><path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("httpGet port {0:?} is not a port name of container {1}")]
    UnknownPort(String, String),
    #[error("httpGet port {0} is out of range")]
    BadPort(i32),
    #[error("httpGet scheme {0} is not supported by runbox-node (HTTP only)")]
    Scheme(String),
}

/// Resolves an `httpGet` against its container (a port may be a container
/// port's name) and the pod's IP.
pub fn target(get: &HTTPGetAction, container: &Container, pod_ip: &str) -> Result<Target, TargetError> {
    if let Some(scheme) = get.scheme.as_deref().filter(|s| !s.eq_ignore_ascii_case("HTTP")) {
        return Err(TargetError::Scheme(scheme.to_owned()));
    }
    let port = match &get.port {
        IntOrString::Int(p) => *p,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(p) => p,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| TargetError::UnknownPort(name.clone(), container.name.clone()))?,
        },
    };
    if !(1..=65535).contains(&port) {
        return Err(TargetError::BadPort(port));
    }
    let host = get.host.as_deref().filter(|h| !h.is_empty()).unwrap_or(pod_ip);
    let path = get.path.as_deref().unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let headers = get
        .http_headers
        .iter()
        .flatten()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    Ok(Target {
        url: format!("http://{host}:{port}{path}"),
        headers,
    })
}

/// One GET; true for a 200..=399 answer within `timeout`.
pub async fn check(client: &reqwest::Client, target: &Target, timeout: Duration) -> bool {
    let mut req = client
        .get(&target.url)
        .timeout(timeout)
        .header("user-agent", "runbox-node-probe");
    for (k, v) in &target.headers {
        req = req.header(k, v);
    }
    match req.send().await {
        Ok(resp) => (200..400).contains(&resp.status().as_u16()),
        Err(_) => false,
    }
}

/// A client for probes: no redirects, no pooling (each probe is a fresh
/// connection, as a kubelet's is), no proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .unwrap_or_default()
}

/// Aborts the probe loop when dropped.
#[derive(Debug)]
pub struct Running(JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Probes `target` every period after the initial delay, sending each
/// outcome to `tx` tagged with `kind`, until the returned guard is dropped.
pub fn spawn<K: Copy + Send + 'static>(
    client: reqwest::Client,
    target: Target,
    timing: Timing,
    kind: K,
    tx: mpsc::Sender<(K, bool)>,
) -> Running {
    Running(tokio::spawn(async move {
        let start = tokio::time::Instant::now() + timing.initial_delay;
        let mut ticks = tokio::time::interval_at(start, timing.period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let ok = check(&client, &target, timing.timeout).await;
            if tx.send((kind, ok)).await.is_err() {
                return;
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    fn timing(success: i32, failure: i32) -> Timing {
        Timing::of(&Probe {
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            ..Default::default()
        })
    }

    #[test]
    fn defaults_are_the_kubernetes_ones() {
        let t = Timing::of(&Probe::default());
        assert_eq!(t.initial_delay, Duration::ZERO);
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
    }

    #[test]
    fn readiness_needs_success_threshold_in_a_row() {
        let mut p = Prober::new(timing(2, 2), false);
        assert_eq!(p.observe(true), None);
        assert_eq!(p.observe(false), None, "a failure resets the run of successes");
        assert_eq!(p.observe(true), None);
        assert_eq!(p.observe(true), Some(true));
        assert_eq!(p.observe(true), None, "only a change is reported");
        assert!(p.result());
    }

    #[test]
    fn failure_threshold_in_a_row_flips_back() {
        let mut p = Prober::new(timing(1, 3), false);
        assert_eq!(p.observe(true), Some(true));
        assert_eq!(p.observe(false), None);
        assert_eq!(p.observe(false), None);
        assert_eq!(p.observe(true), None, "a success resets the run of failures");
        assert_eq!(p.observe(false), None);
        assert_eq!(p.observe(false), None);
        assert_eq!(p.observe(false), Some(false));
        assert_eq!(p.observe(false), None);
        assert!(!p.result());
    }

    #[test]
    fn liveness_starts_alive() {
        let mut p = Prober::new(timing(1, 2), true);
        assert_eq!(p.observe(true), None);
        assert_eq!(p.observe(false), None);
        assert_eq!(p.observe(false), Some(false));
    }

    #[test]
    fn targets_resolve_port_names_and_the_pod_ip() {
        let container = Container {
            name: "executor".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        let get = HTTPGetAction {
            path: Some("/readyz".into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        };
        assert_eq!(
            target(&get, &container, "127.0.1.2").unwrap().url,
            "http://127.0.1.2:8080/readyz"
        );
        let get = HTTPGetAction {
            port: IntOrString::Int(9090),
            host: Some("127.0.0.9".into()),
            ..Default::default()
        };
        assert_eq!(
            target(&get, &container, "127.0.1.2").unwrap().url,
            "http://127.0.0.9:9090/"
        );
        let get = HTTPGetAction {
            port: IntOrString::String("metrics".into()),
            ..Default::default()
        };
        assert_eq!(
            target(&get, &container, "127.0.1.2").unwrap_err(),
            TargetError::UnknownPort("metrics".into(), "executor".into())
        );
        let get = HTTPGetAction {
            port: IntOrString::Int(443),
            scheme: Some("HTTPS".into()),
            ..Default::default()
        };
        assert_eq!(
            target(&get, &container, "127.0.1.2").unwrap_err(),
            TargetError::Scheme("HTTPS".into())
        );
    }

    #[tokio::test]
    async fn check_counts_2xx_and_3xx_and_nothing_else() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let status = if req.starts_with("GET /ok") {
                    "200 OK"
                } else if req.starts_with("GET /moved") {
                    "302 Found\r\nlocation: /elsewhere"
                } else if req.starts_with("GET /slow") {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let client = client();
        let t = |path: &str| Target {
            url: format!("http://{addr}{path}"),
            headers: vec![],
        };
        let second = Duration::from_secs(1);
        assert!(check(&client, &t("/ok"), second).await);
        assert!(check(&client, &t("/moved"), second).await);
        assert!(!check(&client, &t("/readyz"), second).await);
        assert!(
            !check(&client, &t("/slow"), Duration::from_millis(200)).await,
            "a timeout is a failure"
        );
        let closed = Target {
            url: "http://127.0.0.1:1/".into(),
            headers: vec![],
        };
        assert!(
            !check(&client, &closed, second).await,
            "a refused connection is a failure"
        );
    }
}
