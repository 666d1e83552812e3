//! Command-line flags, each also read from a `GATEWAY_*` environment
//! variable (with feature `embedded`, the embedded executor's from
//! `EXECUTOR_*`). Every default lives here.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::balance::Strategy;

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

    /// The embedded executor's settings (`embedded` discovery only).
    #[cfg(feature = "embedded")]
    #[command(flatten)]
    pub runtime: executor::config::RuntimeArgs,
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

    #[cfg(feature = "embedded")]
    #[test]
    fn request_timeout_outlasts_the_longest_run() {
        let c = Config::try_parse_from(["gateway"]).unwrap();
        assert!(c.request_timeout() > Duration::from_millis(c.runtime.max_timeout_ms));
    }
}
