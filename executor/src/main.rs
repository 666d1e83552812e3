//! `executor`: parse config, init tracing, bind, load the runtimes, serve.

use anyhow::Context;
use clap::Parser;
use executor::Executor;
use executor::config::{Command, Config, LogFormat};
use executor::runtimes;
use runbox_api::server::{init_tracing, shutdown_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing(config.log.log_format == LogFormat::Json);

    if let Some(Command::Precompile) = config.command {
        for def in runtimes::select(&config.runtime.runtimes)? {
            let path = (def.precompile)(&config.runtime)
                .with_context(|| format!("precompiling runtime `{}`", def.name))?;
            println!("{}", path.display());
        }
        return Ok(());
    }
    // An unknown runtime name is a configuration error: fail before binding.
    runtimes::select(&config.runtime.runtimes)?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let metrics_listen = config.edge.metrics_listen;
    let metrics = tokio::net::TcpListener::bind(metrics_listen)
        .await
        .with_context(|| format!("binding {metrics_listen} (metrics)"))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        metrics_addr = %metrics.local_addr()?,
        "executor listening"
    );

    let executor = Executor::new(&config.runtime);
    let loader = executor.clone();
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        if let Err(e) = loader.load().await {
            let _ = failed_tx.send(format!("{e:#}"));
        }
    });
    let (reason_tx, reason_rx) = tokio::sync::oneshot::channel::<String>();
    let shutdown = async move {
        tokio::select! {
            () = shutdown_signal() => {},
            Ok(error) = failed_rx => {
                tracing::error!(%error, "a runtime failed to load; exiting");
                let _ = reason_tx.send(error);
            }
        }
    };
    executor::run(
        (listener, metrics),
        executor.clone(),
        config.edge.edge(),
        shutdown,
    )
    .await?;
    if let Ok(reason) = reason_rx.await {
        anyhow::bail!("{reason}");
    }
    if executor.registry().is_none() {
        anyhow::bail!("the runtimes never loaded");
    }
    Ok(())
}
