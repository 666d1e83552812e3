//! Benchmarks (filled in below).
use anyhow::Result;

use crate::paths::Paths;

pub fn run(_paths: &Paths, _iterations: usize) -> Result<()> {
    anyhow::bail!("not yet")
}
