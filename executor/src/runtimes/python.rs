//! `python`: CPython 3.14 for WASI, built into a component by componentize-py
//! from `executor/guest/`, run by [`Sandbox`].

use std::path::PathBuf;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Definition, Loaded, Runtime, engine_options, mount_shared, precompile_guest};
use crate::config::RuntimeArgs;
use crate::sandbox::fs::Layer;
use crate::sandbox::{Entry, Sandbox, SandboxError};

pub const NAME: &str = "python";

pub const DEFINITION: Definition = Definition {
    name: NAME,
    load,
    precompile,
};

/// Loads the guest at `args.guest_wasm` with the server's limit policy.
pub async fn load_python(args: &RuntimeArgs) -> Result<Loaded, SandboxError> {
    let opts = engine_options(args, false);
    let mut layer = Layer::default();
    mount_shared(args, &mut layer)?;
    let sandbox = Sandbox::load(&args.guest_wasm, Entry::Snippet, Some(Arc::new(layer)), &opts).await?;
    Ok(Loaded::new(NAME, sandbox, args.limit_policy()))
}

fn load(args: &RuntimeArgs) -> BoxFuture<'_, Result<Arc<dyn Runtime>, SandboxError>> {
    async move { Ok(Arc::new(load_python(args).await?) as Arc<dyn Runtime>) }.boxed()
}

fn precompile(args: &RuntimeArgs) -> Result<PathBuf, SandboxError> {
    precompile_guest(args, &args.guest_wasm, false)
}
