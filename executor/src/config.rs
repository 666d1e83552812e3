//! Command-line flags, each also read from an `EXECUTOR_*` environment
//! variable. Every default lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};

use runbox_api::{FileLimits, LimitPolicy, Limits};

use crate::sandbox::CpuTarget;

/// runbox executor: runs untrusted Python snippets in fresh wasmtime sandboxes.
#[derive(Debug, Clone, Parser)]
#[command(name = "executor", version, about)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on.
    #[arg(long, env = "EXECUTOR_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    #[command(flatten)]
    pub edge: ExecutorEdge,

    #[command(flatten)]
    pub log: LogArgs,
}

runbox_api::edge_args! {
    /// The executor's HTTP edge (`EXECUTOR_*`): its one client is the
    /// gateway, so no per-client connection cap, and its header timeout
    /// outlasts the gateway's pooled idle connections (20 s).
    pub struct ExecutorEdge {
        prefix: "EXECUTOR_",
        metrics_listen: "127.0.0.1:9091",
        header_timeout_ms: 30_000,
        idle_timeout_ms: 60_000,
        max_connections: 1024,
        max_connections_per_client: 0,
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Compile the configured runtimes into the cache directory and exit (for images and CI).
    Precompile,
}

/// Everything that configures the execution runtime; shared with the gateway,
/// which embeds an executor when it has no remote ones.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// The runtimes to load, comma-separated; the first is the default
    /// (`executor --help` lists the available ones).
    #[arg(
        long,
        env = "EXECUTOR_RUNTIMES",
        value_delimiter = ',',
        default_value = "python,python-scientific"
    )]
    pub runtimes: Vec<String>,

    /// The Python guest component built by `cargo xtask guest`.
    #[arg(
        long,
        env = "EXECUTOR_GUEST_WASM",
        default_value = ".runbox/guest/python.wasm"
    )]
    pub guest_wasm: PathBuf,

    /// The `python-scientific` runtime installed by `cargo xtask guest`: its
    /// adapted interpreter (`python.wasm`), standard-library zip and
    /// matplotlib data.
    #[arg(
        long,
        env = "EXECUTOR_SCIENTIFIC_DIR",
        default_value = ".runbox/guest/python-scientific"
    )]
    pub scientific_dir: PathBuf,

    /// Guest memory cap of a `python-scientific` run when the request names
    /// none (clamped to `EXECUTOR_MAX_MEMORY_BYTES`): a pandas run peaks at
    /// ~55 MiB, a plot at ~75 MiB, before the program's own data.
    #[arg(long, env = "EXECUTOR_SCIENTIFIC_DEFAULT_MEMORY_BYTES", default_value_t = 256 << 20)]
    pub scientific_default_memory_bytes: u64,

    /// Fuel of a `python-scientific` run when the request names none
    /// (clamped to `EXECUTOR_MAX_FUEL`): importing pandas alone burns
    /// ~4.4e9, scipy and scikit-learn ~1.4e10.
    #[arg(
        long,
        env = "EXECUTOR_SCIENTIFIC_DEFAULT_FUEL",
        default_value_t = 40_000_000_000
    )]
    pub scientific_default_fuel: u64,

    /// Wall-clock limit of a `python-scientific` run when the request names
    /// none (clamped to `EXECUTOR_MAX_TIMEOUT_MS`): importing scikit-learn
    /// alone takes ~2.5 s.
    #[arg(
        long,
        env = "EXECUTOR_SCIENTIFIC_DEFAULT_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub scientific_default_timeout_ms: u64,

    /// Directory for the ahead-of-time compiled guest. Default:
    /// `$XDG_CACHE_HOME/runbox/aot` or `~/.cache/runbox/aot`.
    #[arg(long, env = "EXECUTOR_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile the guest on every start instead of caching it.
    #[arg(long, env = "EXECUTOR_NO_CACHE")]
    pub no_cache: bool,

    /// The CPU features the compiled guest may use: `x86-64-v2` (SSE4.2,
    /// POPCNT), `x86-64-v3` (adds AVX2, BMI1/2, FMA, LZCNT) or `native` (this
    /// host's). The default, v2, is on every x86-64 server and cloud VM since
    /// ~2010, so an artifact built on any machine loads on every node; v3 is
    /// missing on some nodes still in service and buys the interpreter little.
    /// Part of the artifact's name: `executor precompile` and the server must
    /// agree. A host without the level's features refuses to start, naming
    /// them. Off x86-64, every value means `native`.
    #[arg(long, env = "EXECUTOR_CPU_TARGET", value_enum, default_value_t = CpuTarget::default())]
    pub cpu_target: CpuTarget,

    /// The name reported as `executor` in responses (the pod name in Kubernetes).
    /// Default: the host name.
    #[arg(long, env = "EXECUTOR_NAME")]
    pub name: Option<String>,

    /// Executions run at once. Default: the number of CPUs.
    #[arg(long, env = "EXECUTOR_CONCURRENCY")]
    pub concurrency: Option<usize>,

    /// Allocate every run's memories, tables and stack from a pool reserved
    /// at start (`EXECUTOR_CONCURRENCY` + 1 slots, each memory up to
    /// `EXECUTOR_MAX_MEMORY_BYTES`) instead of mapping them per run; `false`
    /// maps on demand (to compare). The compiled guest is the same either way.
    #[arg(long, env = "EXECUTOR_POOLING", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub pooling: bool,

    /// Requests that may wait for a free slot; past this, 429 at once.
    /// Default: 4 × concurrency.
    #[arg(long, env = "EXECUTOR_QUEUE_DEPTH")]
    pub queue_depth: Option<usize>,

    /// Longest a request waits in the queue before 503 `overloaded`.
    #[arg(long, env = "EXECUTOR_QUEUE_TIMEOUT_MS", default_value_t = 10_000)]
    pub queue_timeout_ms: u64,

    /// Largest request body, in bytes.
    #[arg(long, env = "EXECUTOR_MAX_BODY_BYTES", default_value_t = 4 << 20)]
    pub max_body_bytes: usize,

    /// Largest `code`, in bytes.
    #[arg(long, env = "EXECUTOR_MAX_CODE_BYTES", default_value_t = 256 << 10)]
    pub max_code_bytes: usize,

    /// Largest `stdin`, in bytes.
    #[arg(long, env = "EXECUTOR_MAX_STDIN_BYTES", default_value_t = 1 << 20)]
    pub max_stdin_bytes: usize,

    /// Wall-clock limit when the request names none.
    #[arg(long, env = "EXECUTOR_DEFAULT_TIMEOUT_MS", default_value_t = 5_000)]
    pub default_timeout_ms: u64,
    /// Largest wall-clock limit a request may ask for.
    #[arg(long, env = "EXECUTOR_MAX_TIMEOUT_MS", default_value_t = 30_000)]
    pub max_timeout_ms: u64,

    /// Fuel (CPU budget) when the request names none; about 5e9 units burn
    /// per CPU-second of guest code on a current x86-64 core.
    #[arg(long, env = "EXECUTOR_DEFAULT_FUEL", default_value_t = 10_000_000_000)]
    pub default_fuel: u64,
    /// Largest fuel a request may ask for.
    #[arg(long, env = "EXECUTOR_MAX_FUEL", default_value_t = 100_000_000_000)]
    pub max_fuel: u64,

    /// Guest memory cap when the request names none.
    #[arg(long, env = "EXECUTOR_DEFAULT_MEMORY_BYTES", default_value_t = 128 << 20)]
    pub default_memory_bytes: u64,
    /// Largest guest memory a request may ask for.
    #[arg(long, env = "EXECUTOR_MAX_MEMORY_BYTES", default_value_t = 512 << 20)]
    pub max_memory_bytes: u64,

    /// Cap on each of stdout and stderr when the request names none.
    #[arg(long, env = "EXECUTOR_DEFAULT_OUTPUT_BYTES", default_value_t = 64 << 10)]
    pub default_output_bytes: u64,
    /// Largest output cap a request may ask for.
    #[arg(long, env = "EXECUTOR_MAX_OUTPUT_BYTES", default_value_t = 1 << 20)]
    pub max_output_bytes: u64,

    /// Bytes a run's files may hold in all (contents and names), when the request names none.
    #[arg(long, env = "EXECUTOR_DEFAULT_FILES_BYTES", default_value_t = FileLimits::DEFAULT.bytes)]
    pub default_files_bytes: u64,
    /// Largest `files_bytes` a request may ask for.
    #[arg(long, env = "EXECUTOR_MAX_FILES_BYTES", default_value_t = FileLimits::MAX.bytes)]
    pub max_files_bytes: u64,

    /// Files and directories a run may have at once, when the request names none.
    #[arg(long, env = "EXECUTOR_DEFAULT_FILES_COUNT", default_value_t = FileLimits::DEFAULT.count)]
    pub default_files_count: u64,
    /// Largest `files_count` a request may ask for.
    #[arg(long, env = "EXECUTOR_MAX_FILES_COUNT", default_value_t = FileLimits::MAX.count)]
    pub max_files_count: u64,

    /// Size of any one file of a run, when the request names none.
    #[arg(long, env = "EXECUTOR_DEFAULT_FILE_BYTES", default_value_t = FileLimits::DEFAULT.file_bytes)]
    pub default_file_bytes: u64,
    /// Largest `file_bytes` a request may ask for.
    #[arg(long, env = "EXECUTOR_MAX_FILE_BYTES", default_value_t = FileLimits::MAX.file_bytes)]
    pub max_file_bytes: u64,

    /// Files a run may hold open at once, when the request names none.
    #[arg(long, env = "EXECUTOR_DEFAULT_OPEN_FILES", default_value_t = FileLimits::DEFAULT.open)]
    pub default_open_files: u64,
    /// Largest `open_files` a request may ask for.
    #[arg(long, env = "EXECUTOR_MAX_OPEN_FILES", default_value_t = FileLimits::MAX.open)]
    pub max_open_files: u64,

    /// Longest path of a run's files, in bytes, when the request names none.
    #[arg(long, env = "EXECUTOR_DEFAULT_PATH_BYTES", default_value_t = FileLimits::DEFAULT.path_bytes)]
    pub default_path_bytes: u64,
    /// Largest `path_bytes` a request may ask for.
    #[arg(long, env = "EXECUTOR_MAX_PATH_BYTES", default_value_t = FileLimits::MAX.path_bytes)]
    pub max_path_bytes: u64,

    /// Deepest directory nesting of a run's files, when the request names none.
    #[arg(long, env = "EXECUTOR_DEFAULT_PATH_DEPTH", default_value_t = FileLimits::DEFAULT.depth)]
    pub default_path_depth: u64,
    /// Largest `path_depth` a request may ask for.
    #[arg(long, env = "EXECUTOR_MAX_PATH_DEPTH", default_value_t = FileLimits::MAX.depth)]
    pub max_path_depth: u64,

    /// File contents a response returns, in bytes, when the request names none.
    #[arg(long, env = "EXECUTOR_DEFAULT_OUTPUT_FILES_BYTES", default_value_t = FileLimits::DEFAULT.output_bytes)]
    pub default_output_files_bytes: u64,
    /// Largest `output_files_bytes` a request may ask for.
    #[arg(long, env = "EXECUTOR_MAX_OUTPUT_FILES_BYTES", default_value_t = FileLimits::MAX.output_bytes)]
    pub max_output_files_bytes: u64,

    /// A host directory every run sees read-only at `/shared` (read into
    /// memory once at start and shared by all runs without copying; e.g.
    /// course data). Unset: no `/shared`.
    #[arg(long, env = "EXECUTOR_SHARED_DIR")]
    pub shared_dir: Option<PathBuf>,

    /// Resolution of the wall-clock deadline.
    #[arg(long, env = "EXECUTOR_EPOCH_TICK_MS", default_value_t = 5)]
    pub epoch_tick_ms: u64,

    /// Resolution of the guest's wall and monotonic clocks, in microseconds
    /// (≥ 1): reads are rounded down to it, to blunt timing side channels.
    #[arg(long, env = "EXECUTOR_CLOCK_RESOLUTION_US", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub clock_resolution_us: u64,
}

impl ValueEnum for CpuTarget {
    fn value_variants<'a>() -> &'a [Self] {
        &CpuTarget::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.as_str()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, env = "EXECUTOR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl RuntimeArgs {
    pub fn limit_policy(&self) -> LimitPolicy {
        LimitPolicy {
            default: Limits {
                timeout: Duration::from_millis(self.default_timeout_ms),
                fuel: self.default_fuel,
                memory_bytes: self.default_memory_bytes,
                output_bytes: self.default_output_bytes,
                files: FileLimits {
                    bytes: self.default_files_bytes,
                    count: self.default_files_count,
                    file_bytes: self.default_file_bytes,
                    open: self.default_open_files,
                    path_bytes: self.default_path_bytes,
                    depth: self.default_path_depth,
                    output_bytes: self.default_output_files_bytes,
                },
            },
            max: Limits {
                timeout: Duration::from_millis(self.max_timeout_ms),
                fuel: self.max_fuel,
                memory_bytes: self.max_memory_bytes,
                output_bytes: self.max_output_bytes,
                files: FileLimits {
                    bytes: self.max_files_bytes,
                    count: self.max_files_count,
                    file_bytes: self.max_file_bytes,
                    open: self.max_open_files,
                    path_bytes: self.max_path_bytes,
                    depth: self.max_path_depth,
                    output_bytes: self.max_output_files_bytes,
                },
            },
        }
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .max(1)
    }

    pub fn queue_depth(&self) -> usize {
        self.queue_depth.unwrap_or(4 * self.concurrency())
    }

    pub fn executor_name(&self) -> String {
        self.name
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "executor".to_owned())
    }

    /// The AOT cache directory in force, if any.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(base.join("runbox").join("aot"))
        })
    }

    /// How long a drain may take: the longest run plus the longest queue wait.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.max_timeout_ms + self.queue_timeout_ms) + Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_are_consistent() {
        let c = Config::try_parse_from(["executor"]).unwrap();
        let p = c.runtime.limit_policy();
        assert!(p.default.timeout <= p.max.timeout);
        assert!(p.default.fuel <= p.max.fuel);
        assert!(p.default.memory_bytes <= p.max.memory_bytes);
        assert!(p.default.output_bytes <= p.max.output_bytes);
        assert!(c.runtime.concurrency() >= 1);
        assert_eq!(c.runtime.queue_depth(), 4 * c.runtime.concurrency());
    }

    #[test]
    fn env_settings_map_to_flags() {
        use testkit::env_to_args;
        let args =
            env_to_args::<Config>(&[("EXECUTOR_CONCURRENCY", "3"), ("EXECUTOR_NO_CACHE", "true")]).unwrap();
        assert_eq!(args, ["executor", "--concurrency=3", "--no-cache"]);
        let c = Config::try_parse_from(&args).unwrap();
        assert_eq!(c.runtime.concurrency(), 3);
        assert!(env_to_args::<Config>(&[("EXECUTOR_TYPO", "1")]).is_err());
    }

    #[test]
    fn the_cpu_target_is_a_named_level() {
        let target = |argv: &[&str]| Config::try_parse_from(argv).map(|c| c.runtime.cpu_target);
        assert_eq!(target(&["executor"]).unwrap(), CpuTarget::X86_64V2);
        for t in CpuTarget::ALL {
            assert_eq!(target(&["executor", "--cpu-target", t.as_str()]).unwrap(), t);
        }
        assert!(target(&["executor", "--cpu-target", "haswell"]).is_err());
    }

    #[test]
    fn no_cache_wins_over_a_cache_dir() {
        let c = Config::try_parse_from(["executor", "--cache-dir", "/x", "--no-cache"]).unwrap();
        assert_eq!(c.runtime.cache_dir(), None);
    }
}
