//! Command-line flags, each also read from a `GATEWAY_*` environment
//! variable (with feature `embedded`, the embedded executor's from
//! `EXECUTOR_*`). Every default lives here.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use ipnet::IpNet;

use crate::balance::Strategy;
use crate::door::FairnessConfig;

/// runbox gateway: the front door that spreads `POST /execute` over executors.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Where executors come from. Default: `static` when `--executors` is
    /// given, else `embedded` (an executor inside this process; only in a
    /// gateway built with feature `embedded`).
    #[arg(long, env = "GATEWAY_DISCOVERY", value_enum)]
    pub discovery: Option<DiscoveryKind>,

    /// Executor base URLs for `static` discovery, comma-separated.
    #[arg(long, env = "GATEWAY_EXECUTORS", value_delimiter = ',')]
    pub executors: Vec<String>,

    /// The executor Service whose EndpointSlices are watched (`kubernetes`).
    #[arg(long, env = "GATEWAY_K8S_SERVICE", default_value = "executor")]
    pub k8s_service: String,

    /// Namespace to watch. Default: this pod's namespace.
    #[arg(long, env = "GATEWAY_K8S_NAMESPACE")]
    pub k8s_namespace: Option<String>,

    /// The EndpointSlice port name of the executor API.
    #[arg(long, env = "GATEWAY_K8S_PORT_NAME", default_value = "http")]
    pub k8s_port_name: String,

    /// Longest an executor stays out of the set after a refused connection
    /// (`kubernetes`), unless its EndpointSlice entry changes first.
    #[arg(long, env = "GATEWAY_K8S_EJECT_MS", default_value_t = crate::discover::kubernetes::EJECT_MS)]
    pub k8s_eject_ms: u64,

    /// How a backend is chosen for each request.
    #[arg(long, env = "GATEWAY_BALANCE", value_enum, default_value = "round-robin")]
    pub balance: Strategy,

    /// Largest request body, in bytes (`--max-body-bytes` is the embedded
    /// executor's own limit).
    #[arg(long, env = "GATEWAY_MAX_BODY_BYTES", default_value_t = 4 << 20)]
    pub body_limit_bytes: usize,

    /// Requests in flight through the gateway at once; past this, 429.
    #[arg(long, env = "GATEWAY_MAX_CONCURRENCY", default_value_t = 1024)]
    pub max_concurrency: usize,

    /// Requests per second allowed per client IP (token bucket); 0 turns the
    /// limit off. Default: off in embedded mode, 20 otherwise.
    #[arg(long, env = "GATEWAY_RATE_LIMIT_RPS")]
    pub rate_limit_rps: Option<f64>,

    /// Bucket size: requests a client may send at once before the rate applies.
    #[arg(long, env = "GATEWAY_RATE_LIMIT_BURST", default_value_t = 40)]
    pub rate_limit_burst: u32,

    /// Origins allowed to call the API from a browser (CORS), comma-separated;
    /// `*` allows any. The embedded playground is same-origin and needs none.
    #[arg(long, env = "GATEWAY_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Longest the gateway waits for an executor's answer: the executors'
    /// longest allowed run plus a margin.
    #[arg(long, env = "GATEWAY_REQUEST_TIMEOUT_MS", default_value_t = 35_000)]
    pub request_timeout_ms: u64,

    /// Longest a TCP connect to an executor may take.
    #[arg(long, env = "GATEWAY_CONNECT_TIMEOUT_MS", default_value_t = 1_000)]
    pub connect_timeout_ms: u64,

    /// How often `static` executors are probed on `/readyz`.
    #[arg(long, env = "GATEWAY_PROBE_INTERVAL_MS", default_value_t = 1_000)]
    pub probe_interval_ms: u64,

    /// Longest one probe may take.
    #[arg(long, env = "GATEWAY_PROBE_TIMEOUT_MS", default_value_t = 500)]
    pub probe_timeout_ms: u64,

    /// Log format.
    #[arg(long, env = "GATEWAY_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// The HTTP edge: timeouts, connection caps, the body budget, the metrics listener.
    #[command(flatten)]
    pub edge: GatewayEdge,

    /// Fairness between clients: who a client is, its runs in flight, its budget.
    #[command(flatten)]
    pub clients: ClientArgs,

    /// The embedded executor's settings (`embedded` discovery only).
    #[cfg(feature = "embedded")]
    #[command(flatten)]
    pub runtime: executor::config::RuntimeArgs,
}

runbox_api::edge_args! {
    /// The gateway's HTTP edge (`GATEWAY_*`): the public door, so short
    /// header and idle timeouts and a per-client connection cap.
    pub struct GatewayEdge {
        prefix: "GATEWAY_",
        metrics_listen: "127.0.0.1:9090",
        header_timeout_ms: 10_000,
        idle_timeout_ms: 60_000,
        max_connections: 2048,
        max_connections_per_client: 64,
    }
}

/// Fairness between clients (`GATEWAY_TRUSTED_PROXIES`, `GATEWAY_CLIENT_*`),
/// per gateway replica: each replica keeps its own counts, so a client the
/// load balancer spreads over N replicas gets N times these.
///
/// The defaults keep one client to a fraction of the capacity behind the
/// gateway. Embedded: the executor runs `EXECUTOR_CONCURRENCY` (the CPU
/// count) at once, and a client gets half of that (at least 1; 1 of 2 on a
/// 2-CPU machine) and as many execution-seconds per second, so others always
/// find a slot. With remote executors ([`REMOTE_MAX_INFLIGHT`],
/// [`REMOTE_BUDGET_RATE`]): the base deployment's executors run 2 each, from
/// 2 pods up to 20 (4–40 slots), behind 2 gateway replicas; 8 in flight per
/// replica is at most 16 slots (40% at full scale) for short runs, and
/// 4 execution-s/s per replica sustains at most 8 slots' worth (20%) for long
/// ones. The 60 s burst ([`BUDGET_SECONDS`]) covers two maximum-length runs
/// (or twelve default ones) before the rate applies.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Proxies (CIDRs, or single addresses, comma-separated) whose
    /// `Forwarded` / `X-Forwarded-For` headers name the client; from any
    /// other peer they are ignored. Default: none (the TCP peer is the client).
    #[arg(long, env = "GATEWAY_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<IpNet>,

    /// Runs in flight per client; past it, 429 `rate_limited`. 0 turns the
    /// cap off. Default: half the embedded executor's concurrency (at least
    /// 1), else 8.
    #[arg(long, env = "GATEWAY_CLIENT_MAX_INFLIGHT")]
    pub client_max_inflight: Option<usize>,

    /// A client's execution-time budget: how many execution-seconds it may
    /// have charged at once (each run is charged its `timeout_ms` up front,
    /// and given back what it did not use). 0 turns the budget off.
    #[arg(long, env = "GATEWAY_CLIENT_BUDGET_SECONDS", default_value_t = BUDGET_SECONDS)]
    pub client_budget_seconds: f64,

    /// Execution-seconds per second the budget refills. 0 turns the budget
    /// off. Default: the default runs in flight in embedded mode, else 4.
    #[arg(long, env = "GATEWAY_CLIENT_BUDGET_RATE")]
    pub client_budget_rate: Option<f64>,

    /// Charged for a run that names no `timeout_ms`. Default: the embedded
    /// executor's `EXECUTOR_DEFAULT_TIMEOUT_MS`, else 5000 (the executors' default).
    #[arg(long, env = "GATEWAY_CLIENT_DEFAULT_CHARGE_MS")]
    pub client_default_charge_ms: Option<u64>,
}

/// Runs in flight per client with remote executors (see [`ClientArgs`]).
pub const REMOTE_MAX_INFLIGHT: usize = 8;
/// Execution-seconds per second per client with remote executors.
pub const REMOTE_BUDGET_RATE: f64 = 4.0;
/// The budget's burst, in execution-seconds, in every mode.
pub const BUDGET_SECONDS: f64 = 60.0;
/// The executors' own `EXECUTOR_DEFAULT_TIMEOUT_MS`, charged for a run that names none.
pub const REMOTE_DEFAULT_CHARGE_MS: u64 = 5_000;

/// A CIDR, or one address (a /32 or /128).
fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR (e.g. 10.0.0.0/8) or an IP address"))
}

/// Why a gateway built without feature `embedded` refuses to start in embedded mode.
pub const NO_EMBEDDED_EXECUTOR: &str = "this gateway was built without the embedded executor; \
set GATEWAY_EXECUTORS or GATEWAY_DISCOVERY=kubernetes";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiscoveryKind {
    /// Run an executor inside the gateway process (feature `embedded`).
    Embedded,
    /// A fixed list of executor URLs (`--executors`), health-checked.
    Static,
    /// The executor Service's EndpointSlices, watched through the API server.
    Kubernetes,
}

impl Config {
    pub fn discovery_kind(&self) -> DiscoveryKind {
        self.discovery.unwrap_or(if self.executors.is_empty() {
            DiscoveryKind::Embedded
        } else {
            DiscoveryKind::Static
        })
    }

    /// The per-IP rate in force, `None` when off.
    pub fn rate_limit(&self) -> Option<f64> {
        let default = match self.discovery_kind() {
            DiscoveryKind::Embedded => 0.0,
            _ => 20.0,
        };
        Some(self.rate_limit_rps.unwrap_or(default)).filter(|r| *r > 0.0)
    }

    /// The per-client fairness in force: the flags, else the mode's defaults
    /// (see [`ClientArgs`]).
    pub fn fairness(&self) -> FairnessConfig {
        let a = &self.clients;
        // (runs in flight, budget rate, default charge, longest run) for this mode.
        let (share, rate, default_charge_ms, max_charge_ms) = match self.discovery_kind() {
            #[cfg(feature = "embedded")]
            DiscoveryKind::Embedded => {
                let share = (self.runtime.concurrency() / 2).max(1);
                let longest = self.runtime.max_timeout_ms;
                (share, share as f64, self.runtime.default_timeout_ms, longest)
            }
            _ => (
                REMOTE_MAX_INFLIGHT,
                REMOTE_BUDGET_RATE,
                REMOTE_DEFAULT_CHARGE_MS,
                self.request_timeout_ms,
            ),
        };
        FairnessConfig {
            max_inflight: a.client_max_inflight.unwrap_or(share),
            budget_seconds: a.client_budget_seconds,
            budget_rate: a.client_budget_rate.unwrap_or(rate),
            default_charge: Duration::from_millis(a.client_default_charge_ms.unwrap_or(default_charge_ms)),
            max_charge: Duration::from_millis(max_charge_ms),
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The namespace to watch: the flag, else the service account's.
    pub fn namespace(&self) -> String {
        self.k8s_namespace
            .clone()
            .or_else(|| {
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .ok()
                    .map(|s| s.trim().to_owned())
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_defaults_follow_the_executor_list() {
        let c = Config::try_parse_from(["gateway"]).unwrap();
        assert_eq!(c.discovery_kind(), DiscoveryKind::Embedded);
        assert_eq!(c.rate_limit(), None, "off by default in embedded mode");
        let c = Config::try_parse_from(["gateway", "--executors", "http://a:1,http://b:2"]).unwrap();
        assert_eq!(c.discovery_kind(), DiscoveryKind::Static);
        assert_eq!(c.executors, ["http://a:1", "http://b:2"]);
        assert_eq!(c.rate_limit(), Some(20.0));
        let c = Config::try_parse_from(["gateway", "--discovery", "kubernetes", "--rate-limit-rps", "0"])
            .unwrap();
        assert_eq!(c.rate_limit(), None);
        assert_eq!(c.balance, Strategy::RoundRobin);
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn fairness_is_on_by_default_in_every_mode_and_zero_turns_it_off() {
        let c = Config::try_parse_from(["gateway", "--executors", "http://a:1"]).unwrap();
        let f = c.fairness();
        assert_eq!(
            (f.max_inflight, f.budget_seconds, f.budget_rate),
            (REMOTE_MAX_INFLIGHT, BUDGET_SECONDS, REMOTE_BUDGET_RATE)
        );
        assert_eq!(f.default_charge, Duration::from_millis(REMOTE_DEFAULT_CHARGE_MS));
        assert_eq!(f.max_charge, c.request_timeout());
        assert!(
            c.clients.trusted_proxies.is_empty(),
            "no proxy is trusted by default"
        );
        let c = Config::try_parse_from([
            "gateway",
            "--discovery",
            "kubernetes",
            "--client-max-inflight",
            "0",
            "--client-budget-rate",
            "0",
            "--client-default-charge-ms",
            "700",
        ])
        .unwrap();
        let f = c.fairness();
        assert!(f.is_off(), "{f:?}");
        assert_eq!(f.default_charge, Duration::from_millis(700));
        let c =
            Config::try_parse_from(["gateway", "--executors", "x", "--client-budget-seconds", "0"]).unwrap();
        assert!(!c.fairness().budget_on());
    }

    #[cfg(feature = "embedded")]
    #[test]
    fn embedded_fairness_leaves_room_for_other_clients() {
        for (cpus, share) in [(1, 1), (2, 1), (3, 1), (4, 2), (16, 8)] {
            let n = cpus.to_string();
            let c = Config::try_parse_from(["gateway", "--concurrency", n.as_str()]).unwrap();
            let f = c.fairness();
            assert_eq!(
                (f.max_inflight, f.budget_rate),
                (share, share as f64),
                "{cpus} CPUs"
            );
            assert!(cpus == 1 || f.max_inflight < cpus, "{cpus} CPUs: room for others");
        }
        let c = Config::try_parse_from(["gateway", "--default-timeout-ms", "2500"]).unwrap();
        let f = c.fairness();
        assert_eq!(f.default_charge, Duration::from_millis(2500));
        assert_eq!(f.max_charge, Duration::from_millis(c.runtime.max_timeout_ms));
        assert!(
            f.budget_seconds >= f.max_charge.as_secs_f64(),
            "the longest run fits the burst"
        );
    }

    #[test]
    fn trusted_proxies_are_cidrs_or_addresses() {
        let c = Config::try_parse_from([
            "gateway",
            "--trusted-proxies",
            "10.0.0.0/8, 192.0.2.7,2001:db8::/32",
        ])
        .unwrap();
        let nets: Vec<String> = c.clients.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
        for bad in ["10.0.0.0/33", "proxy.example", "10.0.0.0/8,"] {
            assert!(
                Config::try_parse_from(["gateway", "--trusted-proxies", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[cfg(feature = "embedded")]
    #[test]
    fn request_timeout_outlasts_the_longest_run() {
        let c = Config::try_parse_from(["gateway"]).unwrap();
        assert!(c.request_timeout() > Duration::from_millis(c.runtime.max_timeout_ms));
    }
}
