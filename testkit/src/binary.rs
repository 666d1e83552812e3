//! Where the workspace's binaries, the guest and the AOT cache are.

use std::path::{Path, PathBuf};

/// A binary of the workspace that the integration tests start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bin {
    Executor,
    Gateway,
    Loadtest,
    Baseline,
}

impl Bin {
    pub const ALL: [Bin; 4] = [Bin::Executor, Bin::Gateway, Bin::Loadtest, Bin::Baseline];

    /// The file name (without the platform's executable suffix).
    pub fn name(self) -> &'static str {
        match self {
            Bin::Executor => "executor",
            Bin::Gateway => "gateway",
            Bin::Loadtest => "loadtest",
            Bin::Baseline => "runbox-baseline",
        }
    }

    /// The package that builds it.
    pub fn package(self) -> &'static str {
        match self {
            Bin::Executor => "executor",
            Bin::Gateway => "gateway",
            Bin::Loadtest | Bin::Baseline => "loadtest",
        }
    }

    /// The variable holding its listen address, for the servers.
    pub fn listen_var(self) -> Option<&'static str> {
        match self {
            Bin::Executor => Some("EXECUTOR_LISTEN"),
            Bin::Gateway => Some("GATEWAY_LISTEN"),
            Bin::Baseline => Some("BASELINE_LISTEN"),
            Bin::Loadtest => None,
        }
    }

    /// The variable holding its metrics listen address, for the servers with a metrics
    /// listener of their own.
    pub fn metrics_listen_var(self) -> Option<&'static str> {
        match self {
            Bin::Executor => Some("EXECUTOR_METRICS_LISTEN"),
            Bin::Gateway => Some("GATEWAY_METRICS_LISTEN"),
            Bin::Baseline | Bin::Loadtest => None,
        }
    }

    /// The built binary: in `RUNBOX_BIN_DIR` when set, else in the target directory this test
    /// executable was built into (`$CARGO_TARGET_DIR/<profile>/` or `target/<profile>/`).
    /// Panics, naming the `cargo build` that makes it, when it is not there.
    pub fn path(self) -> PathBuf {
        let dir = bin_dir();
        let path = dir.join(format!("{}{}", self.name(), std::env::consts::EXE_SUFFIX));
        assert!(
            path.is_file(),
            "{} is missing: build it with `cargo build -p {} --bin {}` (into the same target \
             directory as the tests: {}), or set RUNBOX_BIN_DIR to a directory that holds it",
            path.display(),
            self.package(),
            self.name(),
            dir.display(),
        );
        path
    }
}

/// The directory the binaries are looked up in (see [`Bin::path`]).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RUNBOX_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    profile_dir(&exe).unwrap_or_else(|| {
        panic!(
            "{} is not inside a cargo target directory; set RUNBOX_BIN_DIR",
            exe.display()
        )
    })
}

/// `…/<profile>` for a test executable at `…/<profile>/deps/<name>` (or a binary at
/// `…/<profile>/<name>`).
fn profile_dir(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    Some(if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent()?.to_owned()
    } else {
        dir.to_owned()
    })
}

/// The workspace root (the directory of the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives inside the workspace")
        .to_owned()
}

/// The guest component: `EXECUTOR_GUEST_WASM` when set (`cargo xtask test` sets it), else
/// `.runbox/guest/python.wasm` in the workspace (`cargo xtask guest` builds it).
pub fn guest_wasm() -> PathBuf {
    std::env::var_os("EXECUTOR_GUEST_WASM").map_or_else(
        || workspace_root().join(".runbox/guest/python.wasm"),
        PathBuf::from,
    )
}

/// The `python-scientific` runtime's directory: `EXECUTOR_SCIENTIFIC_DIR` when set (`cargo
/// xtask test` sets it), else `.runbox/guest/python-scientific` in the workspace.
pub fn scientific_dir() -> PathBuf {
    std::env::var_os("EXECUTOR_SCIENTIFIC_DIR").map_or_else(
        || workspace_root().join(".runbox/guest/python-scientific"),
        PathBuf::from,
    )
}

/// The AOT cache the executors share: `EXECUTOR_CACHE_DIR` when set (`cargo xtask test` sets
/// it). Without it, the processes [`crate::executor`] and [`crate::gateway`] start compile the
/// guest themselves (`EXECUTOR_NO_CACHE=true`) rather than touch the user's cache.
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("EXECUTOR_CACHE_DIR").map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_dir_is_above_deps() {
        assert_eq!(
            profile_dir(Path::new("/t/debug/deps/it-123")),
            Some(PathBuf::from("/t/debug"))
        );
        assert_eq!(
            profile_dir(Path::new("/t/x86_64-unknown-linux-gnu/release/loadtest")),
            Some(PathBuf::from("/t/x86_64-unknown-linux-gnu/release"))
        );
    }

    #[test]
    fn this_test_runs_inside_a_target_dir() {
        let dir = profile_dir(&std::env::current_exe().unwrap()).unwrap();
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
        if let Some(target) = target.filter(|t| t.is_absolute()) {
            assert!(
                dir.starts_with(&target),
                "{} not in {}",
                dir.display(),
                target.display()
            );
        }
        assert!(dir.join("deps").is_dir(), "{}", dir.display());
    }

    #[test]
    fn names_and_packages() {
        assert_eq!(Bin::Baseline.name(), "runbox-baseline");
        assert_eq!(Bin::Baseline.package(), "loadtest");
        assert!(Bin::Loadtest.listen_var().is_none());
        assert!(workspace_root().join("Cargo.toml").is_file());
    }
}
