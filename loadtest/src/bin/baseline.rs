//! `runbox-baseline`: parse the configuration, check the interpreter, bind, serve until Ctrl-C or
//! SIGTERM. Logs one JSON line with `fields.addr` (like the executor and the gateway).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use loadtest::baseline::{self, Baseline, Config};

async fn shutdown() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let result = async {
        let baseline = Arc::new(Baseline::new(config.clone()).await?);
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        println!(
            "{}",
            serde_json::json!({
                "level": "INFO",
                "fields": {
                    "message": "baseline listening",
                    "addr": addr.to_string(),
                    "python": config.python,
                    "version": baseline.version(),
                },
                "target": "runbox_baseline",
            })
        );
        baseline::run(listener, baseline, shutdown()).await?;
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
