//! A real Kubernetes control plane on 127.0.0.1, for `cargo xtask e2e`:
//! etcd, kube-apiserver, kube-controller-manager and kube-scheduler built
//! from the Go module proxy at the versions pinned in
//! `cluster-setup/loopback/*/go.{mod,sum}` (checksums checked by `go` against
//! the committed go.sum), Prometheus from Debian (file_sd targets written by
//! the node agent), and prometheus-adapter, registered with the aggregator as
//! `custom.metrics.k8s.io` and configured with the project's own rules
//! (`k8s/prometheus-adapter/values.yaml`).
//!
//! The binaries are cached under `<cache>/loopback/<key>/bin`, the key
//! hashing the modules, the build flags and `go version`: a warm run skips
//! Go entirely; a cold one takes ~8 min on 2 cores and ~6 GB of Go caches
//! (`<cache>/go`). Certificates, kubeconfigs and data are made per run in
//! the run's directory and gone with it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use crate::paths::Paths;
use crate::status;

/// The Kubernetes release every control-plane binary is built at.
pub const KUBERNETES: &str = "v1.37.2";
/// Ports on 127.0.0.1, away from the defaults so a cluster of the machine's
/// own (or the services the other tests start) does not collide.
const ETCD_CLIENT: u16 = 12379;
const ETCD_PEER: u16 = 12380;
pub const APISERVER: u16 = 16443;
const CONTROLLER_MANAGER: u16 = 20257;
const SCHEDULER: u16 = 20259;
pub const PROMETHEUS: u16 = 19090;
const ADAPTER: u16 = 16445;
/// The node's pod range, made local the way 127.0.0.0/8 is: the whole
/// range is added to the loopback interface (`ip addr add 198.18.0.1/24 dev
/// lo`), so every address in it is this host's and no packet to it leaves
/// the host. Not 127.0.0.0/8 itself: the API server refuses loopback
/// addresses in EndpointSlices and Endpoints (`ValidateEndpointIP`), so pods
/// there could never be any Service's endpoints. From 198.18.0.0/15, the
/// range RFC 2544 reserves for benchmarking, which no network routes.
pub const POD_RANGE: &str = "198.18.0.0/24";
/// The range's first address: the node's own, where the adapter listens
/// (the aggregator reaches it through an Endpoints object, which may not
/// name a loopback address either).
pub const NODE_ADDRESS: &str = "198.18.0.1";
/// The Service range (nothing routes it: no kube-proxy; the gateway and
/// Prometheus use pod addresses, the aggregator the adapter's endpoint).
const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The apiserver's first Service address, in its serving certificate.
const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
/// Debian's Prometheus (built without Kubernetes service discovery).
const PROMETHEUS_PACKAGE: &str = "prometheus=2.42.0+ds-5+deb12u1";
/// Free disk a cold Go build needs (its caches and temporary files).
const GO_BUILD_BYTES: u64 = 7 << 30;
/// How long each component may take to come up.
const START_DEADLINE: Duration = Duration::from_secs(90);

/// One Go module under `cluster-setup/loopback/` and what is built from it.
struct Module {
    dir: &'static str,
    /// (binary name, package path)
    bins: &'static [(&'static str, &'static str)],
    /// Version stamps (`-X`), which a module build does not set by itself.
    stamp: bool,
}

const MODULES: [Module; 3] = [
    Module {
        dir: "controlplane",
        bins: &[
            ("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"),
            (
                "kube-controller-manager",
                "k8s.io/kubernetes/cmd/kube-controller-manager",
            ),
            ("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler"),
            ("kubectl", "k8s.io/kubernetes/cmd/kubectl"),
        ],
        stamp: true,
    },
    Module {
        dir: "etcd",
        bins: &[("etcd", "go.etcd.io/etcd/server/v3")],
        stamp: false,
    },
    Module {
        dir: "adapter",
        bins: &[("prometheus-adapter", "sigs.k8s.io/prometheus-adapter/cmd/adapter")],
        stamp: false,
    },
];

/// `-ldflags` of a module's build.
fn ldflags(stamp: bool) -> String {
    let mut flags = String::from("-s -w");
    if stamp {
        // Without them every binary says v0.0.0-master+$Format:%H$, which
        // `kubectl version` refuses to parse.
        let (major, minor) = ("1", KUBERNETES.split('.').nth(1).unwrap_or("0"));
        for pkg in ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"] {
            flags.push_str(&format!(
                " -X {pkg}.gitVersion={KUBERNETES} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"
            ));
        }
    }
    flags
}

/// The built binaries.
#[derive(Debug, Clone)]
pub struct Bins {
    dir: PathBuf,
}

impl Bins {
    pub fn get(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Builds (or finds cached) every binary of [`MODULES`], and makes sure
/// Debian's Prometheus is installed.
pub fn build(paths: &Paths) -> Result<Bins> {
    crate::setup::ensure_debian(
        &[("prometheus", PROMETHEUS_PACKAGE), ("openssl", "openssl")],
        "for the control plane on loopback",
    )?;
    go_binaries(paths, None)
}

/// Starts the Go build of [`MODULES`] on a thread of its own, Go's output
/// in `<target>/loopback-build.log`: `cargo xtask test` overlaps it with
/// the Rust builds and tests (whose serial stretches leave a core idle) and
/// joins it before the end-to-end test. Installs nothing (apt stays in the
/// foreground, one at a time).
pub fn build_in_background(paths: &Paths) -> std::thread::JoinHandle<Result<Bins>> {
    let paths = paths.clone();
    std::thread::spawn(move || {
        let log = paths.target_dir.join("loopback-build.log");
        go_binaries(&paths, Some(&log))
            .with_context(|| format!("building the control plane (Go's output: {})", log.display()))
    })
}

/// The Go binaries, built when missing; Go's output to `log` if given.
fn go_binaries(paths: &Paths, log: Option<&Path>) -> Result<Bins> {
    let go = Command::new("go")
        .arg("version")
        .env("GOTOOLCHAIN", "local")
        .output()
        .context("running `go version`: the end-to-end test builds Kubernetes with Go (1.26)")?;
    let mut key = Sha256::new();
    key.update(&go.stdout);
    let root = paths.root.join("cluster-setup/loopback");
    for module in &MODULES {
        for file in ["go.mod", "go.sum"] {
            let path = root.join(module.dir).join(file);
            key.update(fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
        }
        key.update(ldflags(module.stamp));
    }
    let key = format!("{:x}", key.finalize());
    let dir = paths.cache.join("loopback").join(&key[..16]).join("bin");
    let bins = Bins { dir: dir.clone() };
    let missing: Vec<(&Module, &str, &str)> = MODULES
        .iter()
        .flat_map(|m| m.bins.iter().map(move |(b, p)| (m, *b, *p)))
        .filter(|(_, b, _)| !bins.get(b).is_file())
        .collect();
    if missing.is_empty() {
        return Ok(bins);
    }
    let go_dir = paths.cache.join("go");
    for sub in ["cache", "mod", "tmp"] {
        fs::create_dir_all(go_dir.join(sub))?;
    }
    if let Some(free) = free_bytes(&go_dir)
        && free < GO_BUILD_BYTES
    {
        bail!(
            "building Kubernetes needs ~{} GiB free under {} (its Go caches); {} MiB are",
            GO_BUILD_BYTES >> 30,
            go_dir.display(),
            free >> 20
        );
    }
    fs::create_dir_all(&dir)?;
    let output = match log {
        Some(log) => {
            if let Some(parent) = log.parent() {
                fs::create_dir_all(parent)?;
            }
            Some(fs::File::create(log)?)
        }
        None => None,
    };
    let started = Instant::now();
    for (module, bin, package) in missing {
        let partial = dir.join(format!(".{bin}.partial"));
        let mut cmd = Command::new("go");
        cmd.args(["build", "-trimpath", "-ldflags", &ldflags(module.stamp), "-o"])
            .arg(&partial)
            .arg(package)
            .current_dir(root.join(module.dir))
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-mod=readonly")
            .env("GOCACHE", go_dir.join("cache"))
            .env("GOMODCACHE", go_dir.join("mod"))
            .env("GOTMPDIR", go_dir.join("tmp"));
        if let Some(out) = &output {
            cmd.stdout(out.try_clone()?).stderr(out.try_clone()?);
        }
        status(
            &mut cmd,
            &format!("building {bin} from the Go module proxy (once: the binaries are cached)"),
        )?;
        fs::rename(&partial, bins.get(bin))?;
    }
    eprintln!(
        "xtask: the control plane's Go binaries built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(bins)
}

/// Free bytes on the filesystem of `dir` (`df`), if it can say.
fn free_bytes(dir: &Path) -> Option<u64> {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

/// Certificates and kubeconfigs of one cluster (openssl; ~2 s).
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn make(dir: &Path) -> Result<Pki> {
        fs::create_dir_all(dir)?;
        let pki = Pki { dir: dir.to_owned() };
        for ca in ["ca", "front-proxy-ca"] {
            pki.openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-subj",
                &format!("/CN=runbox-loopback-{ca}"),
            ])?;
        }
        let sans = format!(
            "IP:127.0.0.1,IP:{KUBERNETES_SERVICE_IP},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,\
             DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
        );
        pki.cert("ca", "apiserver", "/CN=kube-apiserver", "serverAuth", Some(&sans))?;
        // The adapter is reached by the aggregator at its Service's name.
        pki.cert(
            "ca",
            "adapter",
            "/CN=prometheus-adapter",
            "serverAuth",
            Some(&format!(
                "IP:{NODE_ADDRESS},DNS:prometheus-adapter.monitoring.svc"
            )),
        )?;
        pki.cert(
            "ca",
            "admin",
            "/O=system:masters/CN=runbox-e2e-admin",
            "clientAuth",
            None,
        )?;
        pki.cert(
            "ca",
            "controller-manager",
            "/CN=system:kube-controller-manager",
            "clientAuth",
            None,
        )?;
        pki.cert("ca", "scheduler", "/CN=system:kube-scheduler", "clientAuth", None)?;
        pki.cert(
            "front-proxy-ca",
            "front-proxy-client",
            "/CN=front-proxy-client",
            "clientAuth",
            None,
        )?;
        pki.openssl(&["genrsa", "-out", "sa.key", "2048"])?;
        pki.openssl(&["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
        for user in ["admin", "controller-manager", "scheduler"] {
            pki.kubeconfig(user)?;
        }
        Ok(pki)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn openssl(&self, args: &[&str]) -> Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .context("running openssl")?;
        if !out.status.success() {
            bail!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// A key and a certificate `name` signed by `ca`.
    fn cert(&self, ca: &str, name: &str, subject: &str, usage: &str, sans: Option<&str>) -> Result<()> {
        let mut ext = format!(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n"
        );
        if let Some(sans) = sans {
            ext.push_str(&format!("subjectAltName={sans}\n"));
        }
        fs::write(self.path(&format!("{name}.ext")), ext)?;
        self.openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            subject,
        ])?;
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.crt"),
            "-extfile",
            &format!("{name}.ext"),
        ])
    }

    fn kubeconfig(&self, user: &str) -> Result<PathBuf> {
        let auth = format!(
            "client-certificate: {}\n    client-key: {}",
            self.path(&format!("{user}.crt")).display(),
            self.path(&format!("{user}.key")).display()
        );
        self.write_kubeconfig(user, &auth)
    }

    /// A kubeconfig for the loopback apiserver with `auth` as its user's fields.
    fn write_kubeconfig(&self, user: &str, auth: &str) -> Result<PathBuf> {
        let path = self.path(&format!("{user}.kubeconfig"));
        fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: loopback\n  cluster:\n    \
                 server: https://127.0.0.1:{APISERVER}\n    certificate-authority: {}\n\
                 users:\n- name: {user}\n  user:\n    {auth}\ncontexts:\n- name: loopback\n  \
                 context:\n    cluster: loopback\n    user: {user}\ncurrent-context: loopback\n",
                self.path("ca.crt").display()
            ),
        )?;
        Ok(path)
    }
}

/// `kubectl` with a kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        // Every call bounded (a later `--request-timeout` overrides it).
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=30s");
        cmd
    }

    /// Runs kubectl with `args`; its stdout, or an error with its stderr.
    pub fn out(&self, args: &[&str]) -> Result<String> {
        let out = self.cmd().args(args).output().context("running kubectl")?;
        if !out.status.success() {
            bail!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// kubectl with `args` succeeds.
    pub fn ok(&self, args: &[&str]) -> bool {
        self.cmd()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `kubectl apply` of a manifest given as text.
    pub fn apply(&self, manifest: &str) -> Result<()> {
        let mut child = self
            .cmd()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("kubectl's stdin")?
            .write_all(manifest.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("kubectl apply: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }
}

/// A running control plane; every process is stopped (SIGTERM, then
/// SIGKILL after 10 s) in reverse order on drop.
pub struct Cluster {
    pub dir: PathBuf,
    pub bins: Bins,
    /// kubectl as the cluster's admin (system:masters).
    pub kubectl: Kubectl,
    pki: Pki,
    procs: Vec<(String, Child)>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        while let Some((name, child)) = self.procs.pop() {
            stop(&name, child, Duration::from_secs(10));
        }
        let _ = local_range("del");
    }
}

/// Adds (`add`) or removes (`del`) [`POD_RANGE`] on the loopback interface.
fn local_range(op: &str) -> Result<()> {
    let out = Command::new("ip")
        .args(["addr", op, &format!("{NODE_ADDRESS}/24"), "dev", "lo"])
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip addr {op} {NODE_ADDRESS}/24 dev lo (needs root): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// SIGTERM, then SIGKILL after `grace`; reaped.
pub fn stop(name: &str, mut child: Child, grace: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("xtask: {name} did not stop within {grace:?}: SIGKILL");
    let _ = child.kill();
    let _ = child.wait();
}

impl Cluster {
    /// Makes the PKI and starts etcd, the apiserver, the controller-manager
    /// and the scheduler in `dir`; returns once the `default` ServiceAccount
    /// exists (the controllers' informers are synced: what a workload
    /// applied earlier would wait for anyway).
    pub fn start(bins: Bins, dir: &Path) -> Result<Cluster> {
        let started = Instant::now();
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir.join("logs"))?;
        let pki = Pki::make(&dir.join("pki"))?;
        let kubectl = Kubectl {
            bin: bins.get("kubectl"),
            kubeconfig: pki.path("admin.kubeconfig"),
        };
        // A range left by a run that was killed is taken over.
        let _ = local_range("del");
        local_range("add")?;
        let mut cluster = Cluster {
            dir: dir.to_owned(),
            bins,
            kubectl: kubectl.clone(),
            pki,
            procs: Vec::new(),
        };
        let p = |name: &str| cluster.pki.path(name).display().to_string();
        let etcd_args = vec![
            "--name=loopback".to_owned(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{ETCD_CLIENT}"),
            format!("--advertise-client-urls=http://127.0.0.1:{ETCD_CLIENT}"),
            format!("--listen-peer-urls=http://127.0.0.1:{ETCD_PEER}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER}"),
            format!("--initial-cluster=loopback=http://127.0.0.1:{ETCD_PEER}"),
            // Nothing here outlives the run.
            "--unsafe-no-fsync".to_owned(),
        ];
        let apiserver_args = vec![
            format!("--etcd-servers=http://127.0.0.1:{ETCD_CLIENT}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={APISERVER}"),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--authorization-mode=Node,RBAC".to_owned(),
            // The master-endpoint reconciler refuses a loopback address.
            "--endpoint-reconciler-type=none".to_owned(),
            format!("--cert-dir={}", dir.join("apiserver-certs").display()),
            // The aggregation layer (custom.metrics.k8s.io through the
            // adapter), set up as kubeadm does; aggregator routing goes to
            // the adapter's endpoint, as there is no kube-proxy for its
            // Service address.
            format!("--requestheader-client-ca-file={}", p("front-proxy-ca.crt")),
            "--requestheader-allowed-names=front-proxy-client".to_owned(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".to_owned(),
            "--requestheader-group-headers=X-Remote-Group".to_owned(),
            "--requestheader-username-headers=X-Remote-User".to_owned(),
            format!("--proxy-client-cert-file={}", p("front-proxy-client.crt")),
            format!("--proxy-client-key-file={}", p("front-proxy-client.key")),
            "--enable-aggregator-routing=true".to_owned(),
        ];
        let kcm = p("controller-manager.kubeconfig");
        let controller_manager_args = vec![
            format!("--kubeconfig={kcm}"),
            format!("--authentication-kubeconfig={kcm}"),
            format!("--authorization-kubeconfig={kcm}"),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={CONTROLLER_MANAGER}"),
            "--leader-elect=false".to_owned(),
            format!("--service-account-private-key-file={}", p("sa.key")),
            format!("--root-ca-file={}", p("ca.crt")),
            "--use-service-account-credentials=true".to_owned(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            // The HPA reads its metrics every 5 s rather than 15 s: the
            // test waits for it three times.
            "--horizontal-pod-autoscaler-sync-period=5s".to_owned(),
        ];
        let sched = p("scheduler.kubeconfig");
        let scheduler_args = vec![
            format!("--kubeconfig={sched}"),
            format!("--authentication-kubeconfig={sched}"),
            format!("--authorization-kubeconfig={sched}"),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={SCHEDULER}"),
            "--leader-elect=false".to_owned(),
        ];
        let etcd = cluster.bins.get("etcd");
        cluster.spawn("etcd", Command::new(etcd).args(etcd_args))?;
        cluster.wait("etcd", || Ok(http_ok(ETCD_CLIENT, "/health", false)))?;
        let apiserver = cluster.bins.get("kube-apiserver");
        cluster.spawn("kube-apiserver", Command::new(apiserver).args(apiserver_args))?;
        cluster.wait("kube-apiserver /readyz", || {
            Ok(kubectl.ok(&["get", "--raw=/readyz"]))
        })?;
        let kcm = cluster.bins.get("kube-controller-manager");
        cluster.spawn(
            "kube-controller-manager",
            Command::new(kcm).args(controller_manager_args),
        )?;
        let scheduler = cluster.bins.get("kube-scheduler");
        cluster.spawn("kube-scheduler", Command::new(scheduler).args(scheduler_args))?;
        cluster.wait("kube-controller-manager /healthz", || {
            Ok(http_ok(CONTROLLER_MANAGER, "/healthz", true))
        })?;
        cluster.wait("kube-scheduler /healthz", || {
            Ok(http_ok(SCHEDULER, "/healthz", true))
        })?;
        cluster.wait("the default ServiceAccount", || {
            Ok(kubectl.ok(&["get", "serviceaccount", "default"]))
        })?;
        eprintln!(
            "xtask: control plane {KUBERNETES} ready on https://127.0.0.1:{APISERVER} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(cluster)
    }

    /// The admin kubeconfig (system:masters).
    pub fn admin(&self) -> PathBuf {
        self.pki.path("admin.kubeconfig")
    }

    /// A kubeconfig for `namespace/serviceaccount`, with a token the
    /// apiserver issues for it (`kubectl create token`): a process outside
    /// the cluster acting with exactly that account's RBAC.
    pub fn serviceaccount_kubeconfig(&self, namespace: &str, account: &str) -> Result<PathBuf> {
        let token = self.kubectl.out(&[
            "create",
            "token",
            account,
            "--namespace",
            namespace,
            "--duration",
            "2h",
        ])?;
        self.pki.write_kubeconfig(
            &format!("{namespace}-{account}"),
            &format!("token: {}", token.trim()),
        )
    }

    /// Starts a process of the cluster, its output in `logs/<name>.log`.
    pub fn spawn(&mut self, name: &str, cmd: &mut Command) -> Result<()> {
        let log = fs::File::create(self.log(name))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.procs.push((name.to_owned(), child));
        Ok(())
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    /// Polls `ready` every 100 ms until it is true, for at most
    /// [`START_DEADLINE`]; fails at once (with the end of its log) if a
    /// process of the cluster exited.
    pub fn wait(&mut self, what: &str, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
        self.wait_for(what, START_DEADLINE, &mut ready)
    }

    pub fn wait_for(
        &mut self,
        what: &str,
        deadline: Duration,
        ready: &mut dyn FnMut() -> Result<bool>,
    ) -> Result<()> {
        let started = Instant::now();
        let until = started + deadline;
        eprintln!("xtask: waiting for {what} (at most {} s)", deadline.as_secs());
        loop {
            if ready()? {
                eprintln!("xtask:   {what}: {:.1} s", started.elapsed().as_secs_f64());
                return Ok(());
            }
            self.alive()?;
            if Instant::now() > until {
                bail!(
                    "{what}: not within {deadline:?} (logs in {})",
                    self.dir.join("logs").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fails if a process of the cluster has exited.
    pub fn alive(&mut self) -> Result<()> {
        for (name, child) in &mut self.procs {
            if let Some(exit) = child.try_wait()? {
                let log =
                    fs::read_to_string(self.dir.join("logs").join(format!("{name}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                bail!(
                    "{name} exited ({exit}):\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        Ok(())
    }

    /// Starts Prometheus scraping the `file_sd` targets in `targets`, every
    /// 2 s, and prometheus-adapter serving the project's rules; registers
    /// the adapter as `v1beta1.custom.metrics.k8s.io` and waits until the
    /// aggregator reports it Available.
    pub fn start_metrics(&mut self, paths: &Paths, targets: &Path) -> Result<()> {
        let config = self.dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "# Written by cargo xtask e2e.\nglobal:\n  scrape_interval: 2s\n  scrape_timeout: 1s\n  \
                 evaluation_interval: 2s\nscrape_configs:\n  - job_name: runbox-executors\n    \
                 file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 2s\n",
                targets.display()
            ),
        )?;
        let mut prometheus = Command::new("prometheus");
        prometheus
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("prometheus").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{PROMETHEUS}"))
            .arg("--storage.tsdb.retention.time=2h")
            .current_dir(&self.dir)
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy");
        self.spawn("prometheus", &mut prometheus)?;
        self.wait("prometheus /-/ready", || {
            Ok(http_ok(PROMETHEUS, "/-/ready", false))
        })?;

        let rules = adapter_rules(paths)?;
        let adapter_config = self.dir.join("prometheus-adapter.yaml");
        fs::write(&adapter_config, rules)?;
        let admin = self.admin().display().to_string();
        let p = |name: &str| self.pki.path(name).display().to_string();
        let adapter_args = vec![
            format!("--prometheus-url=http://127.0.0.1:{PROMETHEUS}/"),
            format!("--config={}", adapter_config.display()),
            "--metrics-relist-interval=5s".to_owned(),
            format!("--secure-port={ADAPTER}"),
            format!("--bind-address={NODE_ADDRESS}"),
            format!("--tls-cert-file={}", p("adapter.crt")),
            format!("--tls-private-key-file={}", p("adapter.key")),
            format!("--lister-kubeconfig={admin}"),
            format!("--authentication-kubeconfig={admin}"),
            format!("--authorization-kubeconfig={admin}"),
        ];
        let adapter = self.bins.get("prometheus-adapter");
        self.spawn("prometheus-adapter", Command::new(adapter).args(adapter_args))?;
        let ca = BASE64.encode(fs::read(self.pki.path("ca.crt"))?);
        // The Service without a selector and its Endpoints name the adapter's
        // address (mirrored into an EndpointSlice by the controller-manager);
        // with aggregator routing the apiserver dials that.
        self.kubectl.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: monitoring\n---\n\
             apiVersion: v1\nkind: Service\nmetadata:\n  name: prometheus-adapter\n  namespace: monitoring\n\
             spec:\n  ports:\n    - name: https\n      port: {ADAPTER}\n      targetPort: {ADAPTER}\n---\n\
             apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: prometheus-adapter\n  namespace: monitoring\n\
             subsets:\n  - addresses:\n      - ip: {NODE_ADDRESS}\n    ports:\n      - name: https\n        port: {ADAPTER}\n---\n\
             apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata:\n  name: v1beta1.custom.metrics.k8s.io\n\
             spec:\n  group: custom.metrics.k8s.io\n  version: v1beta1\n  groupPriorityMinimum: 100\n  versionPriority: 100\n  \
             service:\n    namespace: monitoring\n    name: prometheus-adapter\n    port: {ADAPTER}\n  caBundle: {ca}\n"
        ))?;
        let kubectl = self.kubectl.clone();
        let mut available = || {
            Ok(kubectl
                .out(&[
                    "get",
                    "apiservice",
                    "v1beta1.custom.metrics.k8s.io",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Available\")].status}",
                ])
                .map(|s| s.trim() == "True")
                .unwrap_or(false))
        };
        self.wait_for("custom.metrics.k8s.io Available", START_DEADLINE, &mut available)
    }
}

/// `GET https?://127.0.0.1:<port><path>` answers 2xx (curl; self-signed
/// certificates of the health endpoints accepted).
fn http_ok(port: u16, path: &str, tls: bool) -> bool {
    let url = format!("{}://127.0.0.1:{port}{path}", if tls { "https" } else { "http" });
    Command::new("curl")
        .args(["-fsk", "--max-time", "2", "-o", "/dev/null", &url])
        .status()
        .is_ok_and(|s| s.success())
}

/// The adapter's `--config` from the chart values the project ships: the
/// list under `rules.custom` becomes `rules` (JSON, which is YAML).
fn adapter_rules(paths: &Paths) -> Result<String> {
    let path = paths.root.join("k8s/prometheus-adapter/values.yaml");
    let values: serde_json::Value = serde_norway::from_str(&fs::read_to_string(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let rules = values
        .pointer("/rules/custom")
        .filter(|r| r.as_array().is_some_and(|r| !r.is_empty()))
        .with_context(|| format!("{} has no rules.custom list", path.display()))?;
    Ok(serde_json::to_string_pretty(
        &serde_json::json!({ "rules": rules }),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_adapter_config_is_the_chart_rules() {
        let paths = Paths::discover().unwrap();
        let config: serde_json::Value = serde_json::from_str(&adapter_rules(&paths).unwrap()).unwrap();
        let rules = config["rules"].as_array().unwrap();
        assert_eq!(rules[0]["name"]["as"], "executor_utilisation");
        assert!(
            rules[0]["metricsQuery"]
                .as_str()
                .unwrap()
                .contains("executor_concurrency_limit")
        );
    }

    #[test]
    fn stamps_carry_the_release() {
        let flags = ldflags(true);
        assert!(flags.contains("k8s.io/component-base/version.gitVersion=v1.37.2"));
        assert!(flags.contains("k8s.io/client-go/pkg/version.gitMinor=37"));
        assert_eq!(ldflags(false), "-s -w");
    }
}
