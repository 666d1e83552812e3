//! `executor`: parse config, init tracing, bind, load the runtime, serve.

use anyhow::Context;
use clap::Parser;
use executor::config::{Command, Config};
use executor::{Executor, sandbox};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    executor::init_tracing(config.log.log_format);

    if let Some(Command::Precompile) = config.command {
        let dir = config
            .runtime
            .cache_dir()
            .context("precompile needs a cache directory (--cache-dir)")?;
        let engine = sandbox::engine(true)?;
        let path = sandbox::precompile(&engine, &config.runtime.guest_wasm, &dir)?;
        println!("{}", path.display());
        return Ok(());
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "executor listening");

    let executor = Executor::new(&config.runtime);
    let loader = executor.clone();
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        if let Err(e) = loader.load().await {
            let _ = failed_tx.send(e.to_string());
        }
    });
    let shutdown = async move {
        tokio::select! {
            () = executor::shutdown_signal() => {},
            Ok(error) = failed_rx => tracing::error!(%error, "runtime failed to load; exiting"),
        }
    };
    executor::run(listener, executor.clone(), shutdown).await?;
    if executor.sandbox().is_none() {
        anyhow::bail!("the Python runtime never loaded");
    }
    Ok(())
}
