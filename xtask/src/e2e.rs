//! `cargo xtask e2e`: the deploy path end to end, on a real control plane
//! (`loopback`): the `e2e` overlay (`k8s/overlays/e2e`, the kubeadm overlay
//! with only what cannot run here patched out) applied with `kubectl apply
//! -k`, executor pods run from the project's images by the node agent
//! (`nodeagent/`, podman), Prometheus scraping them, prometheus-adapter
//! serving their utilisation to the HPA, and the real gateway binary in its
//! Kubernetes discovery mode with its own ServiceAccount's token. Then:
//!
//! 1. `kubectl scale deployment/executor --replicas=4` (the HPA taken out
//!    first, as an operator taking manual control does): requests spread
//!    over 4 executors; the time from each new pod's readiness to its first
//!    request served is reported (goal ≤ 2 s).
//! 2. The HPA back, a load ramp from `loadtest`: the HPA raises the
//!    replicas from 2 on the custom metric and lowers them after the load;
//!    the replica count over time (the gateway's ready backends) is in the
//!    loadtest plot, and the HPA's own readings in `hpa-samples.json`.
//! 3. A pod deleted under load costs only its in-flight requests (clean
//!    502/503), none after its endpoint is gone.
//! 4. `kubectl rollout restart deployment/executor` under load loses no
//!    request that was not in flight.
//!
//! Everything runs in `<target>/e2e/` (logs, plots, reports), stopped on
//! every path out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::loopback::{self, Cluster, Kubectl};
use crate::paths::Paths;
use crate::process::exchange;

const NAMESPACE: &str = "runbox";
const NODE: &str = "loopback-node";
const SELECTOR: &str = "app.kubernetes.io/name=executor";
/// The HPA's minReplicas (base/executor/hpa.yaml).
const MIN_REPLICAS: u64 = 2;
/// Runs in flight plus queued per executor (EXECUTOR_CONCURRENCY +
/// EXECUTOR_QUEUE_DEPTH in the deployment): the most a pod that dies can
/// take with it.
const PER_POD_INFLIGHT: u64 = 2 + 8;
const HELLO: &str = r#"{"code":"print('hi')"}"#;

/// The end-to-end test with this checkout's `profile` binaries; the images
/// must be built already (`image::build`).
pub fn run(paths: &Paths, profile: &str) -> Result<()> {
    let started = Instant::now();
    let bins = loopback::build(paths)?;
    crate::status(
        crate::cargo(paths).args(build_args(profile)),
        &format!("building the node agent and loadtest ({profile})"),
    )?;
    let dir = paths.target_dir.join("e2e");
    let mut cluster = Cluster::start(bins, &dir)?;
    let _containers = Leftovers { paths };
    let targets = dir.join("file-sd.json");
    fs::write(&targets, "[]")?;
    cluster.start_metrics(paths, &targets)?;

    let binary = |name: &str| paths.target_dir.join(profile).join(name);
    let mut agent = Command::new(binary("runbox-node"));
    agent
        .env("KUBECONFIG", cluster.admin())
        .env("CONTAINERS_CONF", paths.root.join("k8s/images/containers.conf"))
        .env("RUST_LOG", "info")
        .args([
            "--node-name",
            NODE,
            "--pod-cidr",
            loopback::POD_RANGE,
            "--file-sd",
        ])
        .arg(&targets)
        .arg("--log-dir")
        .arg(dir.join("logs/pods"));
    cluster.spawn("runbox-node", &mut agent)?;
    let kubectl = cluster.kubectl.clone();
    cluster.wait("node Ready", || {
        Ok(kubectl
            .out(&[
                "get",
                "node",
                NODE,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])
            .is_ok_and(|s| s.trim() == "True"))
    })?;

    let overlay = paths.root.join("k8s/overlays/e2e");
    let applied = kubectl
        .out(&["apply", "-k", &overlay.display().to_string()])
        .context("the API server refused the e2e overlay")?;
    eprintln!(
        "xtask: the API server accepted the e2e overlay ({} objects)",
        applied.lines().count()
    );
    let t = Instant::now();
    cluster.wait_for(
        "2 ready executors (the HPA's minimum)",
        Duration::from_secs(120),
        &mut || Ok(ready_pods(&kubectl)?.len() as u64 == MIN_REPLICAS),
    )?;
    eprintln!(
        "xtask: {MIN_REPLICAS} executor pods ready {:.1} s after the apply",
        t.elapsed().as_secs_f64()
    );

    let gateway_kubeconfig = cluster.serviceaccount_kubeconfig(NAMESPACE, "gateway")?;
    let port = free_port()?;
    let metrics_port = free_port()?;
    // The Kubernetes build (no embedded executor), as the image has it.
    let mut gateway = Command::new(paths.target_dir.join("image/gateway/bin/gateway"));
    gateway
        .env("KUBECONFIG", &gateway_kubeconfig)
        .env("GATEWAY_DISCOVERY", "kubernetes")
        .env("GATEWAY_K8S_NAMESPACE", NAMESPACE)
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GATEWAY_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
        // One client (the load generator) for every request.
        .env("GATEWAY_RATE_LIMIT_RPS", "0")
        .env("GATEWAY_CLIENT_MAX_INFLIGHT", "0")
        .env("GATEWAY_CLIENT_BUDGET_RATE", "0")
        .env("RUST_LOG", "info");
    cluster.spawn("gateway", &mut gateway)?;
    let gw = Gateway {
        addr: format!("127.0.0.1:{port}"),
        metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
    };
    cluster.wait("the gateway sees the executors", || {
        Ok(gw.hello().is_ok_and(|(status, _)| status == 200))
    })?;

    let mut figures = Vec::new();
    let mut record = |step: Vec<(String, String)>| {
        for (what, value) in &step {
            eprintln!("xtask: {what}: {value}");
        }
        figures.extend(step);
    };
    record(scale(&mut cluster, &gw)?);
    record(autoscale(&mut cluster, paths, profile, &gw)?);
    record(delete_under_load(&mut cluster, paths, profile, &gw)?);
    record(rollout_under_load(&mut cluster, paths, profile, &gw)?);
    cluster.alive()?;
    eprintln!(
        "xtask: e2e passed in {:.0} s; figures:",
        started.elapsed().as_secs_f64()
    );
    for (what, value) in &figures {
        eprintln!("xtask:   {what}: {value}");
    }
    let summary: BTreeMap<&String, &String> = figures.iter().map(|(k, v)| (k, v)).collect();
    fs::write(dir.join("figures.json"), serde_json::to_string_pretty(&summary)?)?;
    Ok(())
}

/// The node agent and the load generator. In debug, as the whole
/// workspace's binaries: `cargo xtask test` has built exactly those, so
/// this is a no-op there (the two packages alone unify features apart
/// and would rebuild them and their dependencies, ~70 s cold). In release
/// only the two: the workspace would add a second release wasmtime.
fn build_args(profile: &str) -> Vec<&str> {
    if profile == "release" {
        vec![
            "build",
            "--release",
            "--package",
            "runbox-node",
            "--package",
            "loadtest",
        ]
    } else {
        vec!["build", "--workspace", "--bins"]
    }
}

/// Containers the node agent left behind if it was killed (it removes its
/// own on SIGTERM): removed by its label on every path out.
struct Leftovers<'a> {
    paths: &'a Paths,
}

impl Drop for Leftovers<'_> {
    fn drop(&mut self) {
        let conf = self.paths.root.join("k8s/images/containers.conf");
        let Ok(out) = Command::new("podman")
            .env("CONTAINERS_CONF", &conf)
            .args(["ps", "-aq", "--filter", "label=io.runbox.pod-uid"])
            .output()
        else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("podman")
                .env("CONTAINERS_CONF", &conf)
                .args(["rm", "-f", "-t", "0"])
                .args(&ids)
                .output();
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Gateway {
    addr: String,
    metrics: String,
}

impl Gateway {
    /// A hello through the gateway: its status and the executor that ran it.
    fn hello(&self) -> Result<(u16, Option<String>)> {
        let reply = exchange(&self.addr, "POST", "/execute", HELLO, Duration::from_secs(30))?;
        Ok((reply.status, reply.header("x-runbox-executor").map(str::to_owned)))
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests the gateway has answered with 200 (its own counter).
    fn served(&self) -> Result<u64> {
        let addr = self
            .metrics
            .trim_start_matches("http://")
            .trim_end_matches("/metrics");
        let reply = exchange(addr, "GET", "/metrics", "", Duration::from_secs(5))?;
        Ok(reply
            .body
            .lines()
            .filter(|l| l.starts_with("gateway_requests_total{") && l.contains("code=\"200\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }

    /// Waits until the gateway has served `n` more requests: the load is
    /// flowing before the disruption starts.
    fn wait_served(&self, cluster: &mut Cluster, n: u64) -> Result<()> {
        let from = self.served()?;
        cluster.wait_for(
            "load flowing through the gateway",
            Duration::from_secs(20),
            &mut || Ok(self.served()? >= from + n),
        )
    }
}

/// The executor pods, by name: (ready, pod IP, deleting).
fn pods(kubectl: &Kubectl) -> Result<BTreeMap<String, (bool, String, bool)>> {
    let list: Value = serde_json::from_str(&kubectl.out(&[
        "get",
        "pods",
        "--namespace",
        NAMESPACE,
        "--selector",
        SELECTOR,
        "-o",
        "json",
    ])?)?;
    let mut pods = BTreeMap::new();
    for pod in list["items"].as_array().into_iter().flatten() {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default().to_owned();
        let deleting = pod["metadata"]["deletionTimestamp"].is_string();
        pods.insert(name, (ready, ip, deleting));
    }
    Ok(pods)
}

/// Ready executor pods not being deleted.
fn ready_pods(kubectl: &Kubectl) -> Result<BTreeSet<String>> {
    Ok(pods(kubectl)?
        .into_iter()
        .filter(|(_, (ready, _, deleting))| *ready && !deleting)
        .map(|(name, _)| name)
        .collect())
}

/// Addresses the executor Service's EndpointSlices list (any condition).
fn endpoint_addresses(kubectl: &Kubectl) -> Result<BTreeSet<String>> {
    let list: Value = serde_json::from_str(&kubectl.out(&[
        "get",
        "endpointslices",
        "--namespace",
        NAMESPACE,
        "--selector",
        "kubernetes.io/service-name=executor",
        "-o",
        "json",
    ])?)?;
    let mut addresses = BTreeSet::new();
    for slice in list["items"].as_array().into_iter().flatten() {
        for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
            for a in endpoint["addresses"].as_array().into_iter().flatten() {
                addresses.insert(a.as_str().unwrap_or_default().to_owned());
            }
        }
    }
    Ok(addresses)
}

/// `.spec.replicas` of the executor Deployment.
fn replicas(kubectl: &Kubectl) -> Result<u64> {
    kubectl
        .out(&[
            "get",
            "deployment",
            "executor",
            "--namespace",
            NAMESPACE,
            "-o",
            "jsonpath={.spec.replicas}",
        ])?
        .trim()
        .parse()
        .context("the Deployment's replicas")
}

/// One hello's answer: when it came, its status, the executor that ran it.
type Answer = (Instant, u16, Option<String>);

/// Hellos sent back to back through the gateway by `workers` threads until
/// stopped, each recorded as an [`Answer`].
struct Hammer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Answer>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hammer {
    fn start(gw: &Gateway, workers: usize) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..workers)
            .map(|_| {
                let (stop, log, addr) = (stop.clone(), log.clone(), gw.addr.clone());
                std::thread::spawn(move || {
                    let gw = Gateway {
                        addr,
                        metrics: String::new(),
                    };
                    while !stop.load(Ordering::Relaxed) {
                        let (status, executor) = gw.hello().unwrap_or((0, None));
                        log.lock().unwrap_or_else(|e| e.into_inner()).push((
                            Instant::now(),
                            status,
                            executor,
                        ));
                    }
                })
            })
            .collect();
        Hammer { stop, log, threads }
    }

    fn finish(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn served_by(&self, pod: &str) -> Option<Instant> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(_, status, ex)| *status == 200 && ex.as_deref() == Some(pod))
            .map(|(at, _, _)| *at)
    }
}

/// Step 1: `kubectl scale --replicas=4` with requests flowing.
fn scale(cluster: &mut Cluster, gw: &Gateway) -> Result<Vec<(String, String)>> {
    let kubectl = cluster.kubectl.clone();
    // The HPA owns the replica count: an operator scaling by hand takes it
    // out first (step 2 applies the overlay again, which restores it).
    kubectl.out(&["delete", "hpa", "executor", "--namespace", NAMESPACE])?;
    let before = ready_pods(&kubectl)?;
    let hammer = Hammer::start(gw, 2);
    let t0 = Instant::now();
    kubectl.out(&[
        "scale",
        "deployment/executor",
        "--replicas=4",
        "--namespace",
        NAMESPACE,
    ])?;
    let mut ready_at: BTreeMap<String, Instant> = BTreeMap::new();
    let mut served_at: BTreeMap<String, Instant> = BTreeMap::new();
    cluster.wait_for(
        "4 ready executors, each new one serving",
        Duration::from_secs(60),
        &mut || {
            for pod in ready_pods(&kubectl)?.difference(&before) {
                ready_at.entry(pod.clone()).or_insert_with(Instant::now);
            }
            for pod in ready_at.keys() {
                if let Some(at) = hammer.served_by(pod) {
                    served_at.entry(pod.clone()).or_insert(at);
                }
            }
            Ok(ready_at.len() == 2 && served_at.len() == 2)
        },
    )?;
    // Spread: the last 40 requests went to all four.
    let settled = Instant::now();
    cluster.wait_for("requests over 4 executors", Duration::from_secs(10), &mut || {
        let log = hammer.log.lock().unwrap_or_else(|e| e.into_inner());
        let recent: BTreeSet<&str> = log
            .iter()
            .filter(|(at, status, _)| *at > settled && *status == 200)
            .filter_map(|(_, _, ex)| ex.as_deref())
            .collect();
        Ok(recent.len() == 4 && log.iter().filter(|(at, ..)| *at > settled).count() >= 40)
    })?;
    let log = hammer.finish();
    let failed: Vec<u16> = log.iter().map(|(_, s, _)| *s).filter(|s| *s != 200).collect();
    ensure!(failed.is_empty(), "requests failed while scaling up: {failed:?}");
    let mut figures = Vec::new();
    for (pod, ready) in &ready_at {
        let served = served_at[pod];
        // The readiness is seen by polling kubectl (a round takes ~0.2 s,
        // longer under load), so the lag is measured to within that, and
        // is negative when the gateway saw the pod ready before the poll.
        let lag = served.duration_since(t0).as_secs_f64() - ready.duration_since(t0).as_secs_f64();
        figures.push((
            format!("scale: {pod} ready → first request served"),
            format!(
                "{lag:+.2} s (ready seen {:.2} s, served {:.2} s after `kubectl scale`)",
                ready.duration_since(t0).as_secs_f64(),
                served.duration_since(t0).as_secs_f64()
            ),
        ));
        ensure!(
            lag <= 2.0,
            "{pod} served its first request {lag:.2} s after it was ready (goal ≤ 2 s)"
        );
    }
    figures.push((
        "scale: requests during the scale-up".into(),
        format!("{} (all 200), over 4 executors at the end", log.len()),
    ));
    Ok(figures)
}

/// A `loadtest` process against the gateway, its JSON report in `name.json`
/// and its plot in `name.svg`.
fn loadtest(
    paths: &Paths,
    profile: &str,
    gw: &Gateway,
    dir: &Path,
    name: &str,
    args: &[&str],
) -> Result<(Child, PathBuf)> {
    let json = dir.join(format!("{name}.json"));
    let child = Command::new(paths.target_dir.join(profile).join("loadtest"))
        .args(["--url", &gw.url(), "--no-progress", "--timeout", "60s"])
        .args(["--watch-metrics", &gw.metrics, "--watch-interval", "1s"])
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(dir.join(format!("{name}.svg")))
        .args(["--label", name])
        .args(args)
        .stdout(Stdio::null())
        .stderr(fs::File::create(
            dir.join("logs").join(format!("loadtest-{name}.log")),
        )?)
        .spawn()
        .context("starting loadtest")?;
    Ok((child, json))
}

/// Waits for a loadtest (it stops by itself) and reads its report.
fn report(mut child: Child, json: &Path) -> Result<Value> {
    let status = child.wait()?;
    // Exit 3 is a threshold failure; none are set, so any failure is real.
    ensure!(status.success(), "loadtest failed: {status}");
    Ok(serde_json::from_str(&fs::read_to_string(json)?)?)
}

/// Responses by HTTP code.
fn by_code(report: &Value) -> BTreeMap<String, u64> {
    report["by_http_code"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(code, n)| (code.clone(), n.as_u64().unwrap_or(0)))
        .collect()
}

/// The failures of a report: transport errors, 200s whose result was not
/// the expected one, and every response not 200 by code.
fn failures(report: &Value) -> (u64, u64, BTreeMap<String, u64>) {
    let transport = report["counts"]["transport_errors"].as_u64().unwrap_or(0);
    let wrong = report["counts"]["wrong_results"].as_u64().unwrap_or(0);
    let mut codes = by_code(report);
    codes.remove("200");
    (transport, wrong, codes)
}

/// Step 2: the HPA scales the executors up on the utilisation metric under
/// a ramp, and down after it.
fn autoscale(
    cluster: &mut Cluster,
    paths: &Paths,
    profile: &str,
    gw: &Gateway,
) -> Result<Vec<(String, String)>> {
    let kubectl = cluster.kubectl.clone();
    let overlay = paths.root.join("k8s/overlays/e2e");
    kubectl.out(&["apply", "-k", &overlay.display().to_string()])?;
    // Back to the minimum (4 → 2: no load, so a utilisation of 0).
    cluster.wait_for(
        "the HPA back at 2 executors",
        Duration::from_secs(120),
        &mut || Ok(replicas(&kubectl)? == MIN_REPLICAS && pods(&kubectl)?.len() as u64 == MIN_REPLICAS),
    )?;
    // The adapter serves the metric for each pod.
    let raw =
        format!("/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods/*/executor_utilisation");
    cluster.wait_for(
        "executor_utilisation for both pods",
        Duration::from_secs(60),
        &mut || {
            let Ok(out) = kubectl.out(&["get", "--raw", &raw]) else {
                return Ok(false);
            };
            let v: Value = serde_json::from_str(&out)?;
            Ok(v["items"]
                .as_array()
                .is_some_and(|i| i.len() as u64 == MIN_REPLICAS))
        },
    )?;

    let samples = Arc::new(Mutex::new(Vec::<Value>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, stop, kubectl) = (samples.clone(), stop.clone(), kubectl.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(out) =
                    kubectl.out(&["get", "hpa", "executor", "--namespace", NAMESPACE, "-o", "json"])
                    && let Ok(hpa) = serde_json::from_str::<Value>(&out)
                {
                    let metric =
                        hpa["status"]["currentMetrics"][0]["pods"]["current"]["averageValue"].clone();
                    samples
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(serde_json::json!({
                            "unix_ms": unix_ms(),
                            "current_replicas": hpa["status"]["currentReplicas"],
                            "desired_replicas": hpa["status"]["desiredReplicas"],
                            "utilisation": metric,
                        }));
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let max_desired = || {
        samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|s| s["desired_replicas"].as_u64())
            .max()
            .unwrap_or(0)
    };
    // Runs that hold their slot for 250 ms without using the CPU: every pod
    // here shares the same two cores, so a CPU-bound load would saturate
    // them whatever the replica count, while on a cluster each new pod
    // brings cores of its own. With slots that wait, capacity grows with
    // the pods as it does there: 2 pods × 2 slots serve 16/s, and the ramp
    // to 24/s drives the utilisation past the 0.7 target until the HPA has
    // added enough of them (24 × 0.25 s / (0.7 × 2 slots) ≈ 4.3 → 5 pods).
    let program = cluster.dir.join("hpa-ramp.py");
    fs::write(&program, "import time\ntime.sleep(0.25)\nprint('done')\n")?;
    let load_start = unix_ms();
    let (mut child, json) = loadtest(
        paths,
        profile,
        gw,
        &cluster.dir,
        "hpa-ramp",
        &[
            "--code-file",
            &program.display().to_string(),
            "--expect-status",
            "ok",
            "--ramp",
            "2:24:40s",
            "--duration",
            "100s",
            "--max-inflight",
            "64",
        ],
    )?;
    let up = Instant::now();
    let mut scaled_up_after = None;
    let result = cluster.wait_for("the HPA scaling up", Duration::from_secs(110), &mut || {
        if let Some(status) = child.try_wait()?
            && !status.success()
        {
            anyhow::bail!("loadtest failed: {status} (logs/loadtest-hpa-ramp.log)");
        }
        if max_desired() > MIN_REPLICAS {
            scaled_up_after.get_or_insert(up.elapsed());
            return Ok(true);
        }
        Ok(false)
    });
    let load = report(child, &json);
    let load_end = unix_ms();
    let down = cluster.wait_for(
        "the HPA scaling back down to 2",
        Duration::from_secs(180),
        &mut || Ok(replicas(&kubectl)? == MIN_REPLICAS),
    );
    let scaled_down_after = (unix_ms() - load_end) as f64 / 1e3;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner()));
    fs::write(
        cluster.dir.join("hpa-samples.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "load_start_unix_ms": load_start,
            "load_end_unix_ms": load_end,
            "samples": samples,
        }))?,
    )?;
    result?;
    down?;
    let load = load?;
    let peak = samples
        .iter()
        .filter_map(|s| s["current_replicas"].as_u64())
        .max()
        .unwrap_or(0);
    ensure!(
        peak > MIN_REPLICAS,
        "the HPA asked for more replicas but never had them"
    );
    let (transport, wrong, refused) = failures(&load);
    ensure!(
        transport == 0 && wrong == 0,
        "hpa: {transport} transport errors, {wrong} wrong results"
    );
    ensure!(
        refused.keys().all(|code| code == "429" || code == "503"),
        "hpa: responses {refused:?} (only 429/503 may refuse an overload)"
    );
    Ok(vec![
        (
            "hpa: first scale-up after the load started".into(),
            format!("{:.0} s", scaled_up_after.unwrap_or_default().as_secs_f64()),
        ),
        ("hpa: peak replicas".into(), peak.to_string()),
        (
            "hpa: back at 2 after the load ended".into(),
            format!("{scaled_down_after:.0} s"),
        ),
        (
            "hpa: load (sleep 250 ms, 2 → 24 rps over 40 s, 100 s)".into(),
            format!(
                "{} requests, by HTTP code {:?}",
                load["counts"]["sent"],
                by_code(&load)
            ),
        ),
    ])
}

/// Checks a run under disruption: every failure a clean gateway answer
/// (502/503, no transport error), at most `bound` of them.
fn only_in_flight(step: &str, load: &Value, bound: u64) -> Result<u64> {
    let (transport, wrong, codes) = failures(load);
    ensure!(transport == 0, "{step}: {transport} transport errors");
    ensure!(wrong == 0, "{step}: {wrong} wrong results");
    let unclean: Vec<&String> = codes.keys().filter(|c| *c != "502" && *c != "503").collect();
    ensure!(
        unclean.is_empty(),
        "{step}: responses {codes:?} (only 502/503 may fail)"
    );
    let failed: u64 = codes.values().sum();
    ensure!(
        failed <= bound,
        "{step}: {failed} requests failed, more than the {bound} that could have been in flight"
    );
    Ok(failed)
}

/// Hellos at 40/s through the gateway for `duration`, returned once they
/// flow (100 served): the load steps 3 and 4 disrupt.
fn hello_load(
    cluster: &mut Cluster,
    paths: &Paths,
    profile: &str,
    gw: &Gateway,
    name: &str,
    duration: &str,
) -> Result<(Child, PathBuf)> {
    let load = loadtest(
        paths,
        profile,
        gw,
        &cluster.dir,
        name,
        &["--scenario", "hello", "--rate", "40", "--duration", duration],
    )?;
    gw.wait_served(cluster, 100)?;
    Ok(load)
}

/// Step 3: one executor pod deleted under load.
fn delete_under_load(
    cluster: &mut Cluster,
    paths: &Paths,
    profile: &str,
    gw: &Gateway,
) -> Result<Vec<(String, String)>> {
    let kubectl = cluster.kubectl.clone();
    let (child, json) = hello_load(cluster, paths, profile, gw, "delete-pod", "25s")?;
    let pods = pods(&kubectl)?;
    let (victim, (_, ip, _)) = pods.iter().next().context("an executor pod")?;
    kubectl.out(&["delete", "pod", victim, "--namespace", NAMESPACE, "--wait=false"])?;
    let deleted = unix_ms();
    let mut gone = None;
    cluster.wait_for(
        "the deleted pod's endpoint gone",
        Duration::from_secs(30),
        &mut || {
            if !endpoint_addresses(&kubectl)?.contains(ip) {
                gone = Some(unix_ms());
            }
            Ok(gone.is_some())
        },
    )?;
    let gone = gone.unwrap_or(deleted);
    let load = report(child, &json)?;
    let failed = only_in_flight("pod deleted under load", &load, PER_POD_INFLIGHT)?;
    // None after the endpoint went (a second's slack: the timeline is per
    // second, from the loadtest's start).
    let started = load["started_at_unix_ms"].as_u64().unwrap_or(0);
    let after: u64 = load["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| started + p["t_s"].as_u64().unwrap_or(0) * 1000 > gone + 1000)
        .map(|p| p["errors"].as_u64().unwrap_or(0))
        .sum();
    ensure!(
        after == 0,
        "{after} requests failed after the deleted pod's endpoint was gone"
    );
    Ok(vec![
        (
            "delete: address out of the EndpointSlice (preStop 5 s, then the drain)".into(),
            format!("{:.1} s", (gone - deleted) as f64 / 1e3),
        ),
        (
            "delete: requests lost".into(),
            format!(
                "{failed} of {} (bound {PER_POD_INFLIGHT}: the pod's slots and queue)",
                load["counts"]["sent"]
            ),
        ),
    ])
}

/// Step 4: `kubectl rollout restart` under load.
fn rollout_under_load(
    cluster: &mut Cluster,
    paths: &Paths,
    profile: &str,
    gw: &Gateway,
) -> Result<Vec<(String, String)>> {
    let kubectl = cluster.kubectl.clone();
    cluster.wait_for("2 ready executors", Duration::from_secs(60), &mut || {
        Ok(
            ready_pods(&kubectl)?.len() as u64 == MIN_REPLICAS
                && pods(&kubectl)?.len() as u64 == MIN_REPLICAS,
        )
    })?;
    let (child, json) = hello_load(cluster, paths, profile, gw, "rollout-restart", "40s")?;
    let before = pods(&kubectl)?;
    let t = Instant::now();
    kubectl.out(&[
        "rollout",
        "restart",
        "deployment/executor",
        "--namespace",
        NAMESPACE,
    ])?;
    kubectl.out(&[
        "rollout",
        "status",
        "deployment/executor",
        "--namespace",
        NAMESPACE,
        "--timeout=120s",
        "--request-timeout=130s",
    ])?;
    let rolled = t.elapsed();
    let load = report(child, &json)?;
    let after = pods(&kubectl)?;
    ensure!(
        before.keys().all(|p| !after.contains_key(p)),
        "the rollout left old pods: before {:?}, after {:?}",
        before.keys(),
        after.keys()
    );
    let failed = only_in_flight(
        "rollout restart under load",
        &load,
        PER_POD_INFLIGHT * MIN_REPLICAS,
    )?;
    Ok(vec![
        (
            "rollout: restart complete".into(),
            format!("{:.1} s", rolled.as_secs_f64()),
        ),
        (
            "rollout: requests lost".into(),
            format!("{failed} of {}", load["counts"]["sent"]),
        ),
    ])
}
