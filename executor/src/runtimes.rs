//! The runtime seam: what the executor can run, as a registry of loaded
//! runtimes (name → sandbox, version, limits, what it bundles).
//!
//! A runtime is one module under `runtimes/` that exports a [`Definition`]
//! (how to load and precompile it), listed once in [`AVAILABLE`]. The API,
//! admission and metrics code know runtimes only through [`Registry`] and
//! [`Runtime`]: adding one touches nothing else. `EXECUTOR_RUNTIMES` picks
//! which of the available ones a process loads; the first is the default.

pub mod python;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use runbox_api::{LimitPolicy, LimitSet, RuntimeInfo};

use crate::config::RuntimeArgs;
use crate::sandbox::{Job, Outcome, SandboxError};

/// Every runtime this build can load, by name.
pub const AVAILABLE: &[Definition] = &[python::DEFINITION];

/// Loads a runtime from the process's configuration.
pub type LoadFn = for<'a> fn(&'a RuntimeArgs) -> BoxFuture<'a, Result<Arc<dyn Runtime>, SandboxError>>;

/// How to bring one runtime up.
#[derive(Debug, Clone, Copy)]
pub struct Definition {
    /// What a request's `runtime` names.
    pub name: &'static str,
    /// Loads the runtime (from the AOT cache when possible) and checks it works.
    pub load: LoadFn,
    /// Compiles the runtime's guest into the AOT cache; returns the artifact.
    pub precompile: fn(&RuntimeArgs) -> Result<PathBuf, SandboxError>,
}

/// What the registry and `GET /runtimes` know of a loaded runtime.
#[derive(Debug, Clone)]
pub struct Description {
    pub name: &'static str,
    /// Short version, e.g. `3.14.0`.
    pub version: String,
    pub full_version: String,
    pub missing_modules: Vec<String>,
    /// Bundled third-party packages, name → version.
    pub packages: BTreeMap<String, String>,
    /// Defaults and maxima for this runtime's runs.
    pub policy: LimitPolicy,
}

/// A loaded runtime: runs jobs, each in a fresh sandbox.
pub trait Runtime: Send + Sync + std::fmt::Debug {
    fn describe(&self) -> &Description;

    /// Runs `job`. Guest failures of every kind are an [`Outcome`]; only
    /// host faults are errors.
    fn execute<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<Outcome, SandboxError>>;
}

/// Why the configured runtimes could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("unknown runtime `{name}` in EXECUTOR_RUNTIMES; available: {available}")]
    Unknown { name: String, available: String },
    #[error("EXECUTOR_RUNTIMES names no runtime")]
    Empty,
    #[error("runtime `{name}` failed to load: {source}")]
    Failed {
        name: &'static str,
        #[source]
        source: SandboxError,
    },
}

/// The names of every runtime this build has, comma-separated.
pub fn available_names() -> String {
    AVAILABLE.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
}

/// The definitions `names` select, in order, or why not.
pub fn select(names: &[String]) -> Result<Vec<&'static Definition>, LoadError> {
    if names.is_empty() {
        return Err(LoadError::Empty);
    }
    let mut selected: Vec<&'static Definition> = Vec::new();
    for name in names {
        let def = AVAILABLE
            .iter()
            .find(|d| d.name == name.as_str())
            .ok_or_else(|| LoadError::Unknown {
                name: name.clone(),
                available: available_names(),
            })?;
        if !selected.iter().any(|d| d.name == def.name) {
            selected.push(def);
        }
    }
    Ok(selected)
}

/// The loaded runtimes; the first is the default.
#[derive(Debug, Clone)]
pub struct Registry {
    runtimes: Vec<Arc<dyn Runtime>>,
}

impl Registry {
    /// Loads every runtime `args.runtimes` names.
    pub async fn load(args: &RuntimeArgs) -> Result<Registry, LoadError> {
        let mut runtimes = Vec::new();
        for def in select(&args.runtimes)? {
            let runtime = (def.load)(args).await.map_err(|source| LoadError::Failed {
                name: def.name,
                source,
            })?;
            runtimes.push(runtime);
        }
        Ok(Registry { runtimes })
    }

    /// The runtime `name` selects; `None` selects the default.
    pub fn get(&self, name: Option<&str>) -> Option<&Arc<dyn Runtime>> {
        match name {
            None => self.runtimes.first(),
            Some(name) => self.runtimes.iter().find(|r| r.describe().name == name),
        }
    }

    pub fn default_runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtimes[0]
    }

    /// The registry as `GET /runtimes` lists it.
    pub fn infos(&self) -> Vec<RuntimeInfo> {
        self.runtimes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let d = r.describe();
                RuntimeInfo {
                    name: d.name.to_owned(),
                    version: d.version.clone(),
                    full_version: d.full_version.clone(),
                    default: i == 0,
                    missing_modules: d.missing_modules.clone(),
                    packages: d.packages.clone(),
                    limits: LimitSet::from(d.policy),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_keeps_order_drops_repeats_and_names_unknown_runtimes() {
        let got = select(&["python".to_owned(), "python".to_owned()]).unwrap();
        assert_eq!(got.iter().map(|d| d.name).collect::<Vec<_>>(), ["python"]);
        let err = select(&["cobol".to_owned()]).unwrap_err().to_string();
        assert!(err.contains("cobol") && err.contains("python"), "{err}");
        assert!(matches!(select(&[]), Err(LoadError::Empty)));
    }
}
