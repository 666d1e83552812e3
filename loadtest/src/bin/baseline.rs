//! `runbox-baseline`: parse the configuration, init tracing (JSON lines), check the
//! interpreter, bind, serve until Ctrl-C or SIGTERM. Logs `baseline listening` with
//! `fields.addr`, like the executor and the gateway.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use loadtest::baseline::{self, Baseline, Config};
use runbox_api::server::{init_tracing, shutdown_signal};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    init_tracing(true);
    let result = async {
        let baseline = Arc::new(Baseline::new(config.clone()).await?);
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        tracing::info!(addr = %addr, python = %config.python, version = %baseline.version(), "baseline listening");
        baseline::run(listener, baseline, shutdown_signal()).await?;
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("runbox-baseline: {error:#}");
            ExitCode::FAILURE
        }
    }
}
