//! `loadtest`: parse the command line, run, report; the exit code carries the thresholds' verdict.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = loadtest::cli::Cli::parse();
    match loadtest::cli::main(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("loadtest: {error:#}");
            ExitCode::FAILURE
        }
    }
}
