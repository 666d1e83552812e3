//! `gateway`: parse config, init tracing, build the gateway over its
//! discovery source, bind, serve.

use anyhow::Context;
use clap::Parser;
use gateway::Gateway;
use gateway::config::{Config, LogFormat};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    runbox_api::server::init_tracing(config.log_format == LogFormat::Json);
    let gateway = Gateway::from_config(&config).await?;
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
        discovery = ?config.discovery_kind(),
        balance = ?config.balance,
        "gateway listening"
    );
    gateway::run(
        (listener, metrics),
        gateway,
        runbox_api::server::shutdown_signal(),
    )
    .await?;
    Ok(())
}
