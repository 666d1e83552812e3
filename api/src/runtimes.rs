//! `GET /runtimes`: what a server can run, and under which limits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::limits::{LimitPolicy, LimitValues};

/// Defaults and maxima, as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LimitSet {
    pub default: LimitValues,
    pub max: LimitValues,
}

impl From<LimitPolicy> for LimitSet {
    fn from(p: LimitPolicy) -> Self {
        LimitSet {
            default: p.default.into(),
            max: p.max.into(),
        }
    }
}

/// One runtime a server offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuntimeInfo {
    /// What `runtime` in a request names, e.g. `python`.
    pub name: String,
    /// e.g. `3.14.0`.
    pub version: String,
    /// The interpreter's full version string.
    pub full_version: String,
    /// The runtime a request without `runtime` gets.
    pub default: bool,
    /// Standard-library modules this build could not bundle.
    pub missing_modules: Vec<String>,
    /// Third-party packages bundled, name → version.
    pub packages: BTreeMap<String, String>,
    /// This runtime's limits.
    pub limits: LimitSet,
}

/// The `GET /runtimes` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuntimesResponse {
    pub runtimes: Vec<RuntimeInfo>,
    /// The default runtime's limits (the same as its entry's).
    pub limits: LimitSet,
    /// The host or pod that answered.
    pub executor: String,
}
