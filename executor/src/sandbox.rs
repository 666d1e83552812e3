//! Runs one snippet in a fresh wasmtime instance of the Python guest and
//! classifies how it ended. Knows nothing of HTTP.
//!
//! The [`Engine`] and the [`SandboxPre`] (a component with its imports already
//! resolved) are built once; every [`Sandbox::execute`] gets its own [`Store`],
//! so nothing a snippet does survives it.

mod cache;
pub mod clock;
mod epoch;
pub mod fs;
pub mod limits;
mod pool;
mod target;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxView, WasiView};

pub use runbox_api::{FileLimits, LimitHit, LimitKind, Limits, OutputFile, Status};

use self::clock::{CoarseMonotonicClock, CoarseWallClock};
use self::limits::{CappedOutput, MemoryLimiter};

pub use cache::{CacheOutcome, precompile};
pub use pool::{LINEAR_MEMORY_KEEP_RESIDENT, PoolOptions};
pub use target::CpuTarget;

/// Host bindings for the guest's WIT world (`guest/wit/sandbox.wit`).
mod bindings {
    wasmtime::component::bindgen!({
        path: "guest/wit",
        world: "sandbox",
        exports: { default: async },
    });
}

use bindings::SandboxPre;

/// Host bindings for a WASI command adapted to a component
/// (`guest/command/command.wit`): the `python-scientific` runtime.
mod command_bindings {
    wasmtime::component::bindgen!({
        path: "guest/command",
        world: "command",
        exports: { default: async },
    });
}

use command_bindings::CommandPre;

/// How a guest is entered, which decides its WIT world.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A component of the `runbox:guest` world (`guest/wit/sandbox.wit`),
    /// built by componentize-py: `run-snippet(code, path, args)` runs the
    /// entry, and the guest reports its version and missing modules.
    Snippet,
    /// A WASI command (a `wasip1` core module adapted to a component at
    /// build time, `guest/command/command.wit`): its `run` export is
    /// CPython's `main` over the argv `argv`, the entry's path, the job's
    /// args. `introspect` is a program run at load whose stdout is a JSON
    /// object `{"version": sys.version, "packages": {name: version}}`.
    Command {
        argv: Vec<String>,
        introspect: &'static str,
    },
}

/// The instantiable guest, by its world.
enum Pre {
    Snippet(SandboxPre<Guest>),
    Command(CommandPre<Guest>),
}

/// An instance of either world.
enum Instance {
    Snippet(bindings::Sandbox),
    Command(command_bindings::Command),
}

impl Pre {
    async fn instantiate(&self, store: &mut Store<Guest>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::Snippet(pre) => Instance::Snippet(pre.instantiate_async(store).await?),
            Pre::Command(pre) => Instance::Command(pre.instantiate_async(store).await?),
        })
    }
}

/// Largest wasm stack a guest may use; CPython recursion ends in a
/// `StackOverflow` trap beyond it rather than crashing the host.
const MAX_WASM_STACK: usize = 8 << 20;
/// How often a running guest yields to the tokio scheduler, in fuel units, so
/// one CPU-bound snippet cannot starve the server's other tasks.
const FUEL_YIELD_INTERVAL: u64 = 10_000_000;
/// Extra time granted after the deadline for a guest blocked in the host to be
/// dropped; the epoch interrupt normally ends a running guest first.
const DEADLINE_GRACE: Duration = Duration::from_millis(50);
/// Largest `get-random-bytes` request (wasmtime-wasi's default is 64 MiB):
/// the host builds the buffer before the guest's memory limit sees it. A
/// request past it ends the run as `error`. CPython asks for 256 bytes at a
/// time (`getentropy`), so `os.urandom(n)` of any `n` never meets it.
pub const MAX_RANDOM_BYTES: u64 = 1 << 20;
/// Entries the per-store resource table may hold (wasmtime's default is a
/// million): streams, pollables, and the like, each host memory the limiter
/// does not count. CPython holds a handful; a guest that opens more than
/// this fails its host call and the run ends as `error`.
pub const MAX_RESOURCES: usize = 4096;

/// Failures of the host, never of the guest: an unusable artifact, or a
/// wasmtime error that is not a guest trap.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot read guest component {path}: {source}")]
    ReadGuest { path: PathBuf, source: std::io::Error },
    #[error("cannot load guest component: {0}")]
    Load(String),
    #[error("cannot start guest instance: {0}")]
    Instantiate(String),
    /// The job's own files do not fit its filesystem quotas (a client
    /// error: nothing ran).
    #[error("input file `{path}` does not fit: {reason}")]
    InputFiles { path: String, reason: String },
}

fn load_err(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Load(format!("{e:#}"))
}

/// A program's files: relative, normalised paths and their contents.
pub type Files = Vec<(String, Vec<u8>)>;

/// One program to run: its files (the entry among them) in the working
/// directory, the entry's path, its stdin and args, and its limits.
#[derive(Debug, Clone)]
pub struct Job {
    /// The working directory's files; the entry is one of them.
    pub files: Files,
    /// The file run as `__main__`, relative to the working directory.
    pub entry: String,
    pub stdin: Vec<u8>,
    pub args: Vec<String>,
    pub limits: Limits,
}

/// How a run ended, with everything it wrote.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    /// The guest's exit code; `None` when the run was stopped (limit or trap).
    pub exit_code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub duration: Duration,
    /// Exact fuel burnt; `None` after a timeout, where wasmtime cannot tell.
    pub fuel_used: Option<u64>,
    /// The limit that ended the run or, when none did, cut its output.
    pub limit: Option<LimitHit>,
    /// Files under the working directory the run created or changed, by
    /// path; those past `output_files_bytes` are listed without content.
    pub files: Vec<OutputFile>,
    /// Some files were listed without content.
    pub files_truncated: bool,
}

impl Job {
    /// A job running `code` as `main.py` with no other file.
    pub fn code(code: &str, limits: Limits) -> Job {
        Job {
            files: vec![(
                runbox_api::files::DEFAULT_ENTRY.to_owned(),
                code.as_bytes().to_vec(),
            )],
            entry: runbox_api::files::DEFAULT_ENTRY.to_owned(),
            stdin: Vec::new(),
            args: Vec::new(),
            limits,
        }
    }
}

/// Engine settings that matter to the compiled artifact.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where compiled artifacts are cached (`None`: compile on every start).
    pub cache_dir: Option<PathBuf>,
    /// Wall-clock resolution of the deadline.
    pub epoch_tick: Duration,
    /// Meter fuel (the CPU budget). Always on in the service; off only to
    /// measure what metering costs (`cargo xtask bench`).
    pub meter_fuel: bool,
    /// The CPU features compiled code may use (see [`CpuTarget`]); part of
    /// the artifact's name. A host without them refuses to load.
    pub cpu_target: CpuTarget,
    /// Code generation levers (the production settings by default; others
    /// only to measure them, `cargo xtask bench`). Part of the artifact's name.
    pub tuning: Tuning,
    /// Resolution of the guest's wall and monotonic clocks (see [`clock`]).
    pub clock_resolution: Duration,
    /// Allocate instances from a pool of this size (see [`PoolOptions`]);
    /// `None`: map and unmap every run's memories on demand. A runtime
    /// setting: the compiled artifact is the same either way.
    pub pool: Option<PoolOptions>,
    /// The guest uses wasm exception handling (see [`engine_for`]).
    pub exceptions: bool,
}

/// Code generation settings that trade compile time or instantiation work
/// for speed. The defaults are what measured best (`docs/benchmarks.md`,
/// "Code generation levers").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Cranelift inlines small functions, across the component's core
    /// modules and within them (`wasmtime::Inlining::Yes`), instead of not
    /// at all (wasmtime's default).
    pub inlining: bool,
    /// Function tables are filled on first use (wasmtime's default) rather
    /// than at every instantiation.
    pub table_lazy_init: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            inlining: false,
            table_lazy_init: true,
        }
    }
}

/// How the sandbox allocates its instances, as found at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Allocation {
    /// Instances come from the pooling allocator.
    pub pooling: bool,
    /// Runs alive at once the pool holds (`None` without pooling); more wait.
    pub pool_slots: Option<u32>,
    /// The guest's linear memory is mapped copy-on-write from its compiled
    /// image (seen in `/proc/self/maps` while the load's instance lived),
    /// rather than copied in by every instantiation.
    pub cow: bool,
    /// Linear memories and tables one instance of the guest defines.
    pub memories: u32,
    pub tables: u32,
}

/// Per-store state: the WASI context, the run's filesystem and the limiter.
struct Guest {
    wasi: WasiCtx,
    table: ResourceTable,
    fs: fs::Fs,
    limiter: MemoryLimiter,
}

impl WasiView for Guest {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The loaded Python runtime: shared by all requests, cheap to call.
pub struct Sandbox {
    engine: Engine,
    pre: Pre,
    entry: Entry,
    epoch: epoch::Ticker,
    meter_fuel: bool,
    clock_resolution: Duration,
    python_version: String,
    missing_modules: Vec<String>,
    packages: BTreeMap<String, String>,
    cache: CacheOutcome,
    allocation: Allocation,
    /// One permit per pool slot: a run waits for a slot rather than fail
    /// when all are taken (`None` without pooling).
    slots: Option<Arc<Semaphore>>,
    /// Read-only files every run sees, at their mount points.
    layer: Option<Arc<fs::Layer>>,
    /// Runs see their in-memory filesystem (always, but to measure it).
    filesystem: bool,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("python_version", &self.python_version)
            .field("cache", &self.cache)
            .field("allocation", &self.allocation)
            .finish_non_exhaustive()
    }
}

/// [`engine_for`] the default [`CpuTarget`] and [`Tuning`] (for tests and
/// tools).
pub fn engine(meter_fuel: bool, pool: Option<&PoolOptions>) -> Result<Engine, SandboxError> {
    engine_for(CpuTarget::default(), meter_fuel, Tuning::default(), false, pool)
}

/// The engine configuration every artifact is compiled for: code for
/// `target`'s CPU features with `tuning`'s levers, allocating from `pool`
/// when given, with wasm exception handling when the guest uses it
/// (`exceptions`: the `python-scientific` interpreter is C++ built with
/// `-fwasm-exceptions`). The target, the tuning and the features are part
/// of the artifact's cache key; the pool is a runtime setting and changes neither the compiled code
/// nor the key. Building an engine for a target this host lacks succeeds
/// (`executor precompile` may compile for other nodes); loading code with it
/// does not (see [`CpuTarget::check_host`]).
pub fn engine_for(
    target: CpuTarget,
    meter_fuel: bool,
    tuning: Tuning,
    exceptions: bool,
    pool: Option<&PoolOptions>,
) -> Result<Engine, SandboxError> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .wasm_exceptions(exceptions)
        .consume_fuel(meter_fuel)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(MAX_WASM_STACK + (1 << 20))
        // Wasmtime's default, stated: linear memory is mapped copy-on-write
        // from the artifact, not copied in at every instantiation.
        .memory_init_cow(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed)
        .compiler_inlining(if tuning.inlining {
            wasmtime::Inlining::Yes
        } else {
            wasmtime::Inlining::No
        })
        .table_lazy_init(tuning.table_lazy_init);
    target.configure(&mut config)?;
    config.allocation_strategy(pool.map_or(InstanceAllocationStrategy::OnDemand, PoolOptions::strategy));
    Engine::new(&config).map_err(|e| match pool {
        Some(p) => SandboxError::Load(format!(
            "cannot reserve the instance pool ({} slots of {} MiB memories; \
             EXECUTOR_POOLING=false runs without it): {e:#}",
            p.slots,
            p.slot_memory_bytes() >> 20
        )),
        None => load_err(e),
    })
}

/// Checks that one instance of `component` fits the per-run caps: the load
/// fails with a message naming them instead of a run failing later. (A pool
/// whose memories are too small fails the load earlier, when the component
/// is checked against the engine.)
fn fit(component: &Component) -> Result<(u32, u32), SandboxError> {
    let Some(needs) = component.resources_required() else {
        return Ok((0, 0));
    };
    if needs.num_memories > limits::MAX_MEMORIES || needs.num_tables > limits::MAX_TABLES {
        return Err(SandboxError::Load(format!(
            "the guest needs {} memories and {} tables per instance; the sandbox allows {} and {} \
             (limits::MAX_MEMORIES, MAX_TABLES)",
            needs.num_memories,
            needs.num_tables,
            limits::MAX_MEMORIES,
            limits::MAX_TABLES
        )));
    }
    Ok((needs.num_memories, needs.num_tables))
}

/// Where the compiled component lives in this process, to tell its memory
/// images apart in `/proc/self/maps` at load.
struct Image {
    /// The address range of the component's code.
    code: std::ops::Range<usize>,
    /// The artifact file it is mapped from, if it is.
    file: Option<PathBuf>,
}

impl Image {
    /// Mappings of the guest's memory images in this process: mappings of
    /// the artifact (or of wasmtime's anonymous image file) outside the
    /// component's code. Empty where `/proc/self/maps` cannot be read.
    fn mappings(&self) -> Vec<String> {
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return Vec::new();
        };
        let file = self.file.as_ref().map(|f| f.to_string_lossy().into_owned());
        maps.lines()
            .filter(|line| {
                let mut fields = line.splitn(6, ' ');
                let range = fields.next().unwrap_or("");
                let path = fields.nth(4).unwrap_or("").trim_start();
                let start = range
                    .split('-')
                    .next()
                    .and_then(|s| usize::from_str_radix(s, 16).ok())
                    .unwrap_or(0);
                let ours = path.starts_with("/memfd:wasm-memory-image")
                    || file.as_deref().is_some_and(|f| path == f);
                ours && !self.code.contains(&start)
            })
            .map(str::to_owned)
            .collect()
    }
}

impl Sandbox {
    /// Loads the guest component at `guest`, entered as `entry` says, from
    /// the AOT cache when possible, and runs its introspection so a returned
    /// sandbox is known to work. `layer` is mounted read-only in every run
    /// (the introspection's included).
    pub async fn load(
        guest: &Path,
        entry: Entry,
        layer: Option<Arc<fs::Layer>>,
        opts: &EngineOptions,
    ) -> Result<Sandbox, SandboxError> {
        let pool = opts.pool.as_ref();
        opts.cpu_target.check_host()?;
        let engine = engine_for(
            opts.cpu_target,
            opts.meter_fuel,
            opts.tuning,
            opts.exceptions,
            pool,
        )?;
        // Reading and compiling are blocking work: keep them off the runtime.
        let (component, cache, mapped) = {
            let (engine, guest, dir) = (engine.clone(), guest.to_owned(), opts.cache_dir.clone());
            let target = opts.cpu_target;
            tokio::task::spawn_blocking(move || {
                cache::load_component(&engine, target, &guest, dir.as_deref())
            })
            .await
            .map_err(load_err)?
            .map_err(|e| match (pool, e) {
                (Some(p), SandboxError::Load(e)) => p.too_small(e),
                (_, e) => e,
            })?
        };
        let (memories, tables) = fit(&component)?;
        let code = component.image_range();
        let image = Image {
            code: code.start as usize..code.end as usize,
            file: mapped.map(|p| std::fs::canonicalize(&p).unwrap_or(p)),
        };
        let mut linker = Linker::<Guest>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(load_err)?;
        fs::wasi::add_to_linker(&mut linker, |g| fs::wasi::FsView {
            fs: &g.fs,
            table: &mut g.table,
        })
        .map_err(load_err)?;
        let pre = match entry {
            Entry::Snippet => {
                let instance_pre = linker.instantiate_pre(&component).map_err(load_err)?;
                Pre::Snippet(SandboxPre::new(instance_pre).map_err(load_err)?)
            }
            Entry::Command { .. } => {
                // The interpreter's one import beyond WASI, a door to host
                // tools: there are none, and every call says so (-1).
                linker
                    .instance("host")
                    .and_then(|mut host| host.func_wrap("call", |_, _: (i32, i32, i32, i32)| Ok((-1_i32,))))
                    .map_err(load_err)?;
                let instance_pre = linker.instantiate_pre(&component).map_err(load_err)?;
                Pre::Command(CommandPre::new(instance_pre).map_err(load_err)?)
            }
        };
        let epoch = epoch::Ticker::start(engine.clone(), opts.epoch_tick);
        let mut sandbox = Sandbox {
            engine,
            pre,
            entry,
            epoch,
            meter_fuel: opts.meter_fuel,
            clock_resolution: opts.clock_resolution,
            python_version: String::new(),
            missing_modules: Vec::new(),
            packages: BTreeMap::new(),
            cache,
            allocation: Allocation {
                pooling: pool.is_some(),
                pool_slots: pool.map(|p| p.slots),
                cow: false,
                memories,
                tables,
            },
            slots: pool.map(|p| Arc::new(Semaphore::new(p.slots.max(1) as usize))),
            layer,
            filesystem: true,
        };
        let found = sandbox.introspect(&image).await.map_err(|e| match (pool, e) {
            (Some(p), SandboxError::Instantiate(e)) => p.too_small(e),
            (_, e) => e,
        })?;
        sandbox.python_version = found.version;
        sandbox.missing_modules = found.missing;
        sandbox.packages = found.packages;
        sandbox.allocation.cow = found.cow;
        Ok(sandbox)
    }

    /// Mounts `layer` read-only in every later run, in place of the one
    /// given at load.
    pub fn set_layer(&mut self, layer: Arc<fs::Layer>) {
        self.layer = Some(layer);
    }

    /// Runs without any filesystem: no directory, no files (the entry is
    /// still run). Only to measure what the filesystem costs (`cargo xtask
    /// bench`, "Filesystem").
    pub fn without_filesystem(&mut self) {
        self.filesystem = false;
    }

    /// How instances are allocated (pooling, copy-on-write images).
    pub fn allocation(&self) -> Allocation {
        self.allocation
    }

    /// Waits for a pool slot (at once without pooling). Admission admits at
    /// most `EXECUTOR_CONCURRENCY` runs and the pool has a slot more, so a
    /// server never waits here; a run never fails for want of a slot.
    async fn slot(&self) -> Result<Option<SemaphorePermit<'_>>, SandboxError> {
        match &self.slots {
            None => Ok(None),
            Some(slots) => slots
                .acquire()
                .await
                .map(Some)
                .map_err(|e| SandboxError::Instantiate(format!("pool closed: {e}"))),
        }
    }

    /// `sys.version` of the guest interpreter.
    pub fn python_version(&self) -> &str {
        &self.python_version
    }

    /// Standard-library modules the guest could not bundle.
    pub fn missing_modules(&self) -> &[String] {
        &self.missing_modules
    }

    /// Third-party packages the guest bundles, name → version.
    pub fn packages(&self) -> &BTreeMap<String, String> {
        &self.packages
    }

    /// Whether the compiled artifact came from the cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }

    /// A store for one run: WASI wired to the job's pipes and its own
    /// in-memory filesystem holding the job's files, and every budget of
    /// `job.limits` (memory, fuel, deadline, file quotas) in force.
    fn new_store(
        &self,
        job: &Job,
        stdout: &CappedOutput,
        stderr: &CappedOutput,
    ) -> Result<Store<Guest>, SandboxError> {
        let files = fs::Fs::new(
            job.limits.files,
            self.layer.clone(),
            Box::new(CoarseWallClock::new(self.clock_resolution)),
        );
        let files = if self.filesystem {
            let mut tree = files.lock();
            for (path, content) in &job.files {
                tree.put(path, content).map_err(|code| SandboxError::InputFiles {
                    path: path.clone(),
                    reason: fs::describe(code),
                })?;
            }
            drop(tree);
            files
        } else {
            files.unmounted()
        };
        // No env vars, no host directories (the filesystem is `files`,
        // served from memory), no network: the builder's defaults grant none
        // of them. A snippet guest gets no args (it sets `sys.argv` itself);
        // a command gets its argv.
        let mut wasi = WasiCtx::builder();
        if let Entry::Command { argv, .. } = &self.entry {
            wasi.args(argv).arg(&job.entry).args(&job.args);
        }
        let wasi = wasi
            .stdin(MemoryInputPipe::new(job.stdin.clone()))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .max_random_size(MAX_RANDOM_BYTES)
            .wall_clock(CoarseWallClock::new(self.clock_resolution))
            .monotonic_clock(CoarseMonotonicClock::new(self.clock_resolution))
            .build();
        let mut store = Store::new(
            &self.engine,
            Guest {
                wasi,
                table: resource_table(),
                fs: files,
                limiter: MemoryLimiter::new(job.limits.memory_bytes),
            },
        );
        store.limiter(|g| &mut g.limiter);
        if self.meter_fuel {
            let setup = |e: wasmtime::Error| SandboxError::Instantiate(format!("{e:#}"));
            store.set_fuel(job.limits.fuel).map_err(setup)?;
            store
                .fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL))
                .map_err(setup)?;
        }
        store.set_epoch_deadline(self.epoch.ticks_for(job.limits.timeout));
        store.epoch_deadline_trap();
        Ok(store)
    }

    /// Runs `job` in a fresh instance. Guest failures of every kind are an
    /// [`Outcome`]; only host faults are errors.
    pub async fn execute(&self, job: &Job) -> Result<Outcome, SandboxError> {
        // Held until the store is dropped, which returns the slot.
        let _slot = self.slot().await?;
        let started = Instant::now();
        let stdout = CappedOutput::new(job.limits.output_bytes);
        let stderr = CappedOutput::new(job.limits.output_bytes);
        let code = job
            .files
            .iter()
            .find(|(path, _)| *path == job.entry)
            .map(|(_, content)| String::from_utf8_lossy(content).into_owned())
            .ok_or_else(|| SandboxError::InputFiles {
                path: job.entry.clone(),
                reason: "the entry is not among the files".to_owned(),
            })?;
        let mut store = self.new_store(job, &stdout, &stderr)?;
        let fuel = job.limits.fuel;

        let run = async {
            let instance = self
                .pre
                .instantiate(&mut store)
                .await
                .map_err(|e| (Phase::Instantiate, e))?;
            match instance {
                Instance::Snippet(i) => i.call_run_snippet(&mut store, &code, &job.entry, &job.args).await,
                Instance::Command(i) => i.call_run(&mut store).await,
            }
            .map_err(|e| (Phase::Run, e))
        };
        let ended = tokio::time::timeout(job.limits.timeout + DEADLINE_GRACE, run).await;
        let duration = started.elapsed();

        let Ended {
            status,
            exit_code,
            limit,
            note,
        } = match ended {
            Err(_elapsed) => Ended::by(Status::Timeout, LimitKind::Timeout),
            Ok(Ok(code)) => Ended::exit(code, store.data().limiter.denied()),
            Ok(Err((phase, err))) => Ended::error(phase, &err, store.data().limiter.denied())?,
        };
        let fuel_used = match status {
            _ if !self.meter_fuel => None,
            Status::Timeout => None,
            Status::FuelExhausted => Some(fuel),
            _ => store.get_fuel().ok().map(|left| fuel.saturating_sub(left)),
        };
        let (files, files_truncated) = collect_files(&store.data().fs, job.limits.files.output_bytes);
        drop(store);
        let (stdout_bytes, stdout_truncated) = stdout.take();
        let (mut stderr_bytes, stderr_truncated) = stderr.take();
        let limit = limit.map(|kind| LimitHit::new(kind, &job.limits));
        // The note for people reading raw stderr; clients read `limit`.
        let note = note.or_else(|| limit.as_ref().map(|hit| hit.note(status)));
        if let Some(note) = note {
            if !stderr_bytes.is_empty() && !stderr_bytes.ends_with(b"\n") {
                stderr_bytes.push(b'\n');
            }
            stderr_bytes.extend_from_slice(note.as_bytes());
        }
        let limit = limit.or_else(|| {
            (stdout_truncated || stderr_truncated).then(|| LimitHit::new(LimitKind::Output, &job.limits))
        });
        Ok(Outcome {
            status,
            exit_code,
            stdout: stdout_bytes,
            stderr: stderr_bytes,
            stdout_truncated,
            stderr_truncated,
            duration,
            fuel_used,
            limit,
            files,
            files_truncated,
        })
    }

    /// Asks the guest what it is, in a throwaway store, and looks, while
    /// its instance lives, for the memory image mapped into it: a snippet
    /// guest through its exports, a command by running its introspection
    /// program.
    async fn introspect(&self, image: &Image) -> Result<Introspected, SandboxError> {
        let _slot = self.slot().await?;
        // A snippet guest answers through its exports and needs no file; a
        // command runs its introspection program as the entry.
        let entry = "introspect.py".to_owned();
        let files = match &self.entry {
            Entry::Snippet => Vec::new(),
            Entry::Command { introspect, .. } => vec![(entry.clone(), introspect.as_bytes().to_vec())],
        };
        let job = Job {
            files,
            entry,
            stdin: Vec::new(),
            args: Vec::new(),
            limits: Limits {
                timeout: Duration::from_secs(60),
                fuel: u64::MAX / 2,
                memory_bytes: 1 << 30,
                output_bytes: 1 << 20,
                files: FileLimits::default(),
            },
        };
        let (out, err) = (CappedOutput::new(1 << 20), CappedOutput::new(1 << 16));
        let mut store = self.new_store(&job, &out, &err)?;
        let inst = |e: wasmtime::Error| SandboxError::Instantiate(format!("{e:#}"));
        let before = image.mappings();
        let instance = self.pre.instantiate(&mut store).await.map_err(inst)?;
        let cow = image.mappings().iter().any(|m| !before.contains(m));
        match instance {
            Instance::Snippet(i) => Ok(Introspected {
                version: i.call_python_version(&mut store).await.map_err(inst)?,
                missing: i.call_missing_modules(&mut store).await.map_err(inst)?,
                packages: BTreeMap::new(),
                cow,
            }),
            Instance::Command(i) => {
                let ended = i.call_run(&mut store).await;
                let (stdout, stderr) = (out.take().0, err.take().0);
                let failed = |why: String| {
                    SandboxError::Load(format!(
                        "the guest's introspection {why}; its stderr: {}",
                        String::from_utf8_lossy(&stderr).trim()
                    ))
                };
                let code = match ended {
                    Ok(code) => code,
                    Err(e) => match e.downcast_ref::<I32Exit>() {
                        Some(exit) => exit.0,
                        None => return Err(failed(format!("failed: {e:#}"))),
                    },
                };
                if code != 0 {
                    return Err(failed(format!("exited with {code}")));
                }
                #[derive(serde::Deserialize)]
                struct Found {
                    version: String,
                    packages: BTreeMap<String, String>,
                }
                let found: Found = serde_json::from_slice(&stdout)
                    .map_err(|e| failed(format!("printed no JSON object ({e})")))?;
                Ok(Introspected {
                    version: found.version,
                    missing: Vec::new(),
                    packages: found.packages,
                    cow,
                })
            }
        }
    }
}

/// What a guest says of itself at load.
struct Introspected {
    version: String,
    missing: Vec<String>,
    packages: BTreeMap<String, String>,
    cow: bool,
}

/// What listing one output file costs against `output_files_bytes`,
/// besides its path: about its JSON (`{"path":…,"size":…,"encoding":…,
/// "content":…}`). Without it, 100 000 empty files with 4 KiB names would
/// make a 400 MB response of nothing but listing.
pub const OUTPUT_FILE_ENTRY_BYTES: u64 = 64;

/// The files a run leaves for its response: every file under the working
/// directory it created, wrote or moved, in path order, while `budget`
/// bytes of the response last, counted as written on the wire (JSON
/// escapes, base64): each listed file costs its path and
/// [`OUTPUT_FILE_ENTRY_BYTES`], and its content when that fits too (else it
/// is listed without). Files past the budget are not listed; either way
/// the flag says something was left out. So the files part of a response
/// stays within `output_files_bytes` whatever the guest writes (the
/// gateway refuses upstream responses over 64 MiB).
fn collect_files(files: &fs::Fs, budget: u64) -> (Vec<OutputFile>, bool) {
    let tree = files.lock();
    let mut left = budget;
    let mut truncated = false;
    let mut out = Vec::new();
    for (path, data) in tree.changed_files() {
        let entry = runbox_api::files::json_string_len(&path) + OUTPUT_FILE_ENTRY_BYTES;
        if entry > left {
            truncated = true;
            break;
        }
        left -= entry;
        let size = data.len() as u64;
        let wire = OutputFile::content_wire_len(data);
        if wire <= left {
            left -= wire;
            out.push(OutputFile::with_content(path, data));
        } else {
            truncated = true;
            out.push(OutputFile::omitted(path, size));
        }
    }
    (out, truncated)
}

/// A resource table holding at most [`MAX_RESOURCES`] entries.
fn resource_table() -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES);
    table
}

/// Where a run failed: making the instance (before any snippet code runs, so
/// an error that is not a limit is the host's fault) or running the snippet
/// (where the guest can make the host refuse a call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Instantiate,
    Run,
}

/// How a run ended: its status and exit code, the limit that ended it, and
/// a note for stderr when the interpreter itself failed.
#[derive(Debug, PartialEq, Eq)]
struct Ended {
    status: Status,
    exit_code: Option<i32>,
    limit: Option<LimitKind>,
    note: Option<String>,
}

impl Ended {
    /// Stopped by `limit`: no exit code.
    fn by(status: Status, limit: LimitKind) -> Ended {
        Ended {
            status,
            exit_code: None,
            limit: Some(limit),
            note: None,
        }
    }

    fn crashed(note: String) -> Ended {
        Ended {
            status: Status::Error,
            exit_code: None,
            limit: None,
            note: Some(note),
        }
    }

    /// A guest that returned normally: its exit code decides, unless it
    /// failed after being refused memory.
    fn exit(code: i32, memory_denied: bool) -> Ended {
        let (status, limit) = match (code, memory_denied) {
            (0, _) => (Status::Ok, None),
            (_, true) => (Status::MemoryExceeded, Some(LimitKind::Memory)),
            (_, false) => (Status::Error, None),
        };
        Ended {
            status,
            exit_code: Some(code),
            limit,
            note: None,
        }
    }

    /// A guest that trapped, called `exit`, or had a host call refused:
    /// find out which limit, if any, did it. An error that is none of these
    /// while instantiating is a host fault; while running, the guest caused
    /// it (an empty poll list, too many resources, a write past its permit),
    /// so it is the guest's `error`.
    fn error(phase: Phase, err: &wasmtime::Error, memory_denied: bool) -> Result<Ended, SandboxError> {
        if let Some(exit) = err.downcast_ref::<I32Exit>() {
            // `os._exit(n)` or a WASI `exit` from inside the interpreter.
            return Ok(Ended::exit(exit.0, memory_denied));
        }
        let Some(trap) = err.downcast_ref::<Trap>() else {
            if memory_denied {
                return Ok(Ended::by(Status::MemoryExceeded, LimitKind::Memory));
            }
            return match phase {
                Phase::Instantiate => Err(SandboxError::Instantiate(format!("{err:#}"))),
                // The host's own message, without wasmtime's backtrace context.
                Phase::Run => Ok(Ended::crashed(format!(
                    "[runbox] error: the sandbox refused a host call: {}\n",
                    err.root_cause()
                ))),
            };
        };
        Ok(match trap {
            Trap::OutOfFuel => Ended::by(Status::FuelExhausted, LimitKind::Fuel),
            Trap::Interrupt => Ended::by(Status::Timeout, LimitKind::Timeout),
            _ if memory_denied => Ended::by(Status::MemoryExceeded, LimitKind::Memory),
            Trap::StackOverflow => Ended::crashed(
                "[runbox] error: the guest overflowed its stack (recursion too deep)\n".to_owned(),
            ),
            other => Ended::crashed(format!("[runbox] error: the interpreter crashed: {other}\n")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_classified_by_code_and_memory_denial() {
        assert_eq!(Ended::exit(0, true).status, Status::Ok);
        assert_eq!(Ended::exit(3, false).exit_code, Some(3));
        let e = Ended::exit(1, true);
        assert_eq!(
            (e.status, e.limit),
            (Status::MemoryExceeded, Some(LimitKind::Memory))
        );
    }

    #[test]
    fn traps_name_the_limit_that_fired() {
        let trap = |t: Trap| Ended::error(Phase::Run, &wasmtime::Error::new(t), false).unwrap();
        assert_eq!(trap(Trap::OutOfFuel).limit, Some(LimitKind::Fuel));
        assert_eq!(trap(Trap::Interrupt).status, Status::Timeout);
        let overflow = trap(Trap::StackOverflow);
        assert_eq!((overflow.status, overflow.limit), (Status::Error, None));
        assert!(overflow.note.unwrap().contains("stack"));
        let host = wasmtime::Error::msg("empty poll list");
        assert!(Ended::error(Phase::Instantiate, &host, false).is_err());
        for phase in [Phase::Instantiate, Phase::Run] {
            assert_eq!(
                Ended::error(phase, &host, true).unwrap().limit,
                Some(LimitKind::Memory)
            );
        }
    }

    #[test]
    fn the_resource_table_is_capped() {
        let mut table = resource_table();
        let held: Vec<_> = (0..MAX_RESOURCES).map(|i| table.push(i).unwrap()).collect();
        assert!(matches!(
            table.push(0_usize),
            Err(wasmtime_wasi::ResourceTableError::Full)
        ));
        // An entry freed is an entry free again.
        table.delete(held.into_iter().next().unwrap()).unwrap();
        assert!(table.push(0_usize).is_ok());
    }

    #[test]
    fn a_host_call_refused_while_running_is_the_guests_error() {
        let err = wasmtime::Error::msg("empty poll list").context("error while executing at wasm backtrace");
        let e = Ended::error(Phase::Run, &err, false).unwrap();
        assert_eq!((e.status, e.exit_code, e.limit), (Status::Error, None, None));
        assert_eq!(
            e.note.as_deref(),
            Some("[runbox] error: the sandbox refused a host call: empty poll list\n")
        );
    }
}
