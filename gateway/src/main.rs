//! `gateway`: parse config, init tracing, bind, build discovery, serve.

use anyhow::Context;
use clap::Parser;
use gateway::Gateway;
use gateway::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    executor::init_tracing(config.log_format);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        discovery = ?config.discovery_kind(),
        balance = ?config.balance,
        "gateway listening"
    );
    let gateway = Gateway::from_config(&config).await?;
    gateway::run(listener, gateway, executor::shutdown_signal()).await?;
    Ok(())
}
