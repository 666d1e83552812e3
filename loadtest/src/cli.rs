//! The command line: flags (each with a `LOADTEST_*` variable), their validation into a
//! [`RunConfig`], and what to do with the report (table, JSON, plot, thresholds → exit code).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::report::{Report, Thresholds};
use crate::run::{self, Mode, RunConfig, Schedule, StopHandle};
use runbox_api::Status;

use crate::scenario::{Builtin, Expect, Scenario};
use crate::{client, compare, plot};

/// A threshold (`--max-error-rate`, `--max-p99`, `--max-wrong`) was missed.
pub const EXIT_THRESHOLDS: u8 = 3;
/// Stopped by Ctrl-C (the report so far was printed).
pub const EXIT_INTERRUPTED: u8 = 130;
/// After Ctrl-C, in-flight requests get this long before they are cancelled.
const DRAIN: Duration = Duration::from_secs(5);

/// Drives a runbox endpoint (gateway or executor) and reports throughput, latency percentiles,
/// outcomes, wrong results and per-executor fairness.
///
/// Closed loop: `--workers N --requests M` (or `--duration`). Open loop: `--rate R --duration D`
/// or `--ramp FROM:TO[:OVER] --duration D`. Reports: `--compare a.json b.json`,
/// `--summarize a.json b.json …`.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
pub struct Cli {
    /// Base URL of the gateway or executor.
    #[arg(long, env = "LOADTEST_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// Closed loop: concurrent workers, each on one keep-alive connection.
    #[arg(long, env = "LOADTEST_WORKERS", conflicts_with_all = ["rate", "ramp"])]
    pub workers: Option<u64>,

    /// Requests per worker (closed loop) or in total (open loop).
    #[arg(long, env = "LOADTEST_REQUESTS")]
    pub requests: Option<u64>,

    /// Open loop: constant arrival rate in requests per second.
    #[arg(long, env = "LOADTEST_RATE", conflicts_with = "ramp")]
    pub rate: Option<f64>,

    /// Open loop: rate ramp `FROM:TO[:OVER]` in req/s, e.g. `10:500:2m`; OVER defaults to
    /// `--duration`, after it the rate stays at TO.
    #[arg(long, env = "LOADTEST_RAMP", value_parser = parse_ramp)]
    pub ramp: Option<Ramp>,

    /// How long to send (e.g. `30s`, `2m`, `1m30s`); the run stops by itself.
    #[arg(long, env = "LOADTEST_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Open loop: most requests in flight; beyond it sends wait (and the wait counts as latency).
    #[arg(long, env = "LOADTEST_MAX_INFLIGHT", default_value_t = 1000)]
    pub max_inflight: u32,

    /// Built-in workload.
    #[arg(long, env = "LOADTEST_SCENARIO", value_enum, default_value = "hello")]
    pub scenario: Builtin,

    /// A YAML or JSON file of snippets with weights and expectations (replaces `--scenario`).
    #[arg(long, env = "LOADTEST_SCENARIO_FILE", conflicts_with = "code_file")]
    pub scenario_file: Option<PathBuf>,

    /// A Python file sent as the only snippet (replaces `--scenario`).
    #[arg(long, env = "LOADTEST_CODE_FILE")]
    pub code_file: Option<PathBuf>,

    /// With `--code-file`: the expected execution status.
    #[arg(long, env = "LOADTEST_EXPECT_STATUS", requires = "code_file", value_parser = status_parser())]
    pub expect_status: Option<Status>,

    /// With `--code-file`: the expected stdout, exactly.
    #[arg(long, env = "LOADTEST_EXPECT_STDOUT", requires = "code_file")]
    pub expect_stdout: Option<String>,

    /// Client-side limit for one request (then it counts as a `timeout` transport error).
    #[arg(long, env = "LOADTEST_TIMEOUT", value_parser = parse_duration, default_value = "60s")]
    pub timeout: Duration,

    /// Requests sent one by one before measuring, not counted.
    #[arg(long, env = "LOADTEST_WARMUP", default_value_t = 0)]
    pub warmup: u64,

    /// Seed of the weighted choice between snippets.
    #[arg(long, env = "LOADTEST_SEED", default_value_t = 1)]
    pub seed: u64,

    /// Name of the run in reports and comparisons.
    #[arg(long, env = "LOADTEST_LABEL", default_value = "")]
    pub label: String,

    /// Write the full report as JSON (`-` for stdout; the table then goes to stderr).
    #[arg(long, env = "LOADTEST_JSON")]
    pub json: Option<PathBuf>,

    /// Write an SVG of latency percentiles, throughput and in-flight over time.
    #[arg(long, env = "LOADTEST_PLOT")]
    pub plot: Option<PathBuf>,

    /// Scrape these `/metrics` URLs during the run (no value: the gateway's default metrics
    /// listener, port 9090 on the `--url` host; the API port serves no metrics).
    #[arg(long, env = "LOADTEST_WATCH_METRICS", num_args = 0..=1, default_missing_value = "",
          value_delimiter = ',')]
    pub watch_metrics: Vec<String>,

    /// How often `--watch-metrics` scrapes.
    #[arg(long, env = "LOADTEST_WATCH_INTERVAL", value_parser = parse_duration, default_value = "1s")]
    pub watch_interval: Duration,

    /// Fail (exit 3) if errors / requests exceeds this (`0.01` or `1%`).
    #[arg(long, env = "LOADTEST_MAX_ERROR_RATE", value_parser = parse_rate)]
    pub max_error_rate: Option<f64>,

    /// Fail (exit 3) if the p99 latency exceeds this (e.g. `250ms`).
    #[arg(long, env = "LOADTEST_MAX_P99", value_parser = parse_duration)]
    pub max_p99: Option<Duration>,

    /// Fail (exit 3) if there are more wrong results than this.
    #[arg(long, env = "LOADTEST_MAX_WRONG")]
    pub max_wrong: Option<u64>,

    /// No live progress line.
    #[arg(long, env = "LOADTEST_NO_PROGRESS")]
    pub no_progress: bool,

    /// Print two JSON reports side by side with ratios (b/a), then exit.
    #[arg(long, env = "LOADTEST_COMPARE", num_args = 2, value_names = ["A", "B"], value_delimiter = ',',
          conflicts_with_all = ["workers", "rate", "ramp", "summarize"])]
    pub compare: Option<Vec<PathBuf>>,

    /// Print one row per JSON report, then exit.
    #[arg(long, env = "LOADTEST_SUMMARIZE", num_args = 1.., value_name = "REPORT", value_delimiter = ',',
          conflicts_with_all = ["workers", "rate", "ramp"])]
    pub summarize: Option<Vec<PathBuf>>,

    /// With `--summarize`: also plot latency against throughput across the runs to this SVG.
    #[arg(long, env = "LOADTEST_CURVE", requires = "summarize")]
    pub curve: Option<PathBuf>,

    /// `--compare` / `--summarize` as Markdown tables.
    #[arg(long, env = "LOADTEST_MARKDOWN")]
    pub markdown: bool,
}

/// `--ramp FROM:TO[:OVER]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ramp {
    pub from: f64,
    pub to: f64,
    pub over: Option<Duration>,
}

/// humantime's durations (`500ms`, `10s`, `1.5s`, `2m`, `2min`, `1h`, `1m30s`, `1m 30s`, …); a
/// bare number is seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 250ms, 30s, 2m, 1m30s)"))
}

/// The contract's execution statuses, by their wire names.
fn status_parser() -> impl clap::builder::TypedValueParser<Value = Status> {
    use clap::builder::{PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(Status::ALL.map(Status::as_str)).map(|name| {
        Status::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .expect("one of the possible values")
    })
}

pub fn parse_ramp(s: &str) -> Result<Ramp, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let rate = |p: &str| -> Result<f64, String> {
        let r: f64 = p.trim().parse().map_err(|_| format!("{s:?}: bad rate {p:?}"))?;
        if r.is_finite() && r >= 0.0 {
            Ok(r)
        } else {
            Err(format!("{s:?}: a rate must be ≥ 0"))
        }
    };
    match parts.as_slice() {
        [from, to] => Ok(Ramp {
            from: rate(from)?,
            to: rate(to)?,
            over: None,
        }),
        [from, to, over] => Ok(Ramp {
            from: rate(from)?,
            to: rate(to)?,
            over: Some(parse_duration(over)?),
        }),
        _ => Err(format!("{s:?}: expected FROM:TO or FROM:TO:OVER, e.g. 10:500:2m")),
    }
}

/// `0.01` or `1%`.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (number, scale) = match s.strip_suffix('%') {
        Some(n) => (n, 0.01),
        None => (s, 1.0),
    };
    let v: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: not a number"))?;
    let v = v * scale;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{s:?}: an error rate is between 0 and 1 (or 0% and 100%)"
        ))
    }
}

impl Cli {
    fn scenario(&self) -> Result<Scenario> {
        let scenario = if let Some(path) = &self.scenario_file {
            Scenario::from_file(path)?
        } else if let Some(path) = &self.code_file {
            let expect = Expect {
                status: self.expect_status,
                stdout: self.expect_stdout.clone(),
                ..Expect::default()
            };
            Scenario::from_code_file(path, expect)?
        } else {
            Scenario::builtin(self.scenario)
        };
        Ok(scenario.named())
    }

    fn mode(&self) -> Result<Mode> {
        if let Some(workers) = self.workers {
            if workers == 0 {
                bail!("--workers must be at least 1");
            }
            if self.requests.is_none() && self.duration.is_none() {
                bail!("a closed-loop run needs a bound: --requests (per worker) and/or --duration");
            }
            return Ok(Mode::Closed {
                workers,
                requests_per_worker: self.requests,
                duration: self.duration,
            });
        }
        let schedule = match (self.rate, self.ramp) {
            (Some(rate), _) => {
                if !(rate.is_finite() && rate > 0.0) {
                    bail!("--rate must be a positive number of requests per second");
                }
                Schedule::constant(rate)
            }
            (None, Some(ramp)) => {
                let over = ramp
                    .over
                    .or(self.duration)
                    .context("--ramp FROM:TO needs --duration (or FROM:TO:OVER) to know how long to ramp")?;
                if ramp.from == 0.0 && ramp.to == 0.0 {
                    bail!("--ramp: both rates are 0");
                }
                Schedule {
                    from: ramp.from,
                    to: ramp.to,
                    over: over.as_secs_f64(),
                }
            }
            (None, None) => bail!(
                "choose a mode: --workers N --requests M (closed loop), --rate R --duration D or \
                 --ramp FROM:TO --duration D (open loop), --compare A B, or --summarize FILES"
            ),
        };
        if self.requests.is_none() && self.duration.is_none() {
            bail!("an open-loop run needs a bound: --duration and/or --requests (total)");
        }
        if self.max_inflight == 0 {
            bail!("--max-inflight must be at least 1");
        }
        Ok(Mode::Open {
            schedule,
            requests: self.requests,
            duration: self.duration,
            max_inflight: self.max_inflight,
        })
    }

    /// The run's configuration, checked.
    pub fn config(&self) -> Result<RunConfig> {
        let execute = client::execute_uri(&self.url).with_context(|| format!("--url {:?}", self.url))?;
        if execute.scheme_str() != Some("http") {
            bail!("--url {:?}: only http:// is supported", self.url);
        }
        let watch = self
            .watch_metrics
            .iter()
            .map(|u| {
                let base = if u.is_empty() {
                    self.url.as_str()
                } else {
                    u.as_str()
                };
                let uri = if u.is_empty() {
                    client::metrics_uri(base)
                } else {
                    base.parse()
                };
                uri.with_context(|| format!("--watch-metrics {u:?}"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RunConfig {
            target: self.url.clone(),
            execute,
            mode: self.mode()?,
            scenario: self.scenario()?,
            timeout: self.timeout,
            warmup: self.warmup,
            seed: self.seed,
            label: self.label.clone(),
            progress: !self.no_progress,
            watch,
            watch_interval: self.watch_interval.max(Duration::from_millis(50)),
        })
    }

    fn thresholds(&self) -> Thresholds {
        Thresholds {
            max_error_rate: self.max_error_rate,
            max_p99_ms: self.max_p99.map(|d| d.as_secs_f64() * 1000.0),
            max_wrong: self.max_wrong,
        }
    }
}

/// Ctrl-C once: stop sending, let in-flight requests finish for [`DRAIN`]; twice: cancel them.
fn on_ctrl_c(handle: StopHandle) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        eprintln!("\nloadtest: stopping; in-flight requests get {DRAIN:?} (Ctrl-C again to cancel them)");
        handle.stop();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = tokio::time::sleep(DRAIN) => {}
        }
        handle.cancel();
    })
}

fn write_json(report: &Report, path: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    if path == Path::new("-") {
        println!("{json}");
        return Ok(());
    }
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
}

/// Runs what the command line asks for; the exit code says whether thresholds held.
pub async fn main(cli: Cli) -> Result<ExitCode> {
    if let Some(paths) = &cli.compare {
        let (a, b) = (compare::load(&paths[0])?, compare::load(&paths[1])?);
        print!("{}", compare::render_compare(&a, &b, cli.markdown));
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(paths) = &cli.summarize {
        let reports = paths
            .iter()
            .map(|p| compare::load(p))
            .collect::<Result<Vec<_>>>()?;
        print!("{}", compare::render_summary(&reports, cli.markdown));
        if let Some(path) = &cli.curve {
            plot::plot_curve(&reports, path)?;
        }
        return Ok(ExitCode::SUCCESS);
    }

    let config = cli.config()?;
    let (handle, stop) = run::stop_pair();
    let signals = on_ctrl_c(handle);
    let mut report = run::run(config, stop).await;
    signals.abort();

    report.thresholds = cli.thresholds();
    report.threshold_result = report.thresholds.check(&report);
    let table = report.render();
    if cli.json.as_deref() == Some(Path::new("-")) {
        eprint!("{table}");
    } else {
        print!("{table}");
    }
    if let Some(path) = &cli.json {
        write_json(&report, path)?;
    }
    if let Some(path) = &cli.plot {
        plot::plot_run(&report, path)?;
    }
    Ok(if report.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if !report.threshold_result.passed {
        ExitCode::from(EXIT_THRESHOLDS)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 30s "), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("-1s").is_err());
        let e = parse_duration("5 lightyears").unwrap_err();
        assert!(e.contains("e.g. 250ms"), "{e}");
    }

    #[test]
    fn the_expected_status_takes_the_wire_names() {
        let c = cli(&["--code-file", "x.py", "--expect-status", "fuel_exhausted"]);
        assert_eq!(c.expect_status, Some(Status::FuelExhausted));
        let bad = Cli::try_parse_from(["loadtest", "--code-file", "x.py", "--expect-status", "fine"]);
        assert!(bad.is_err());
    }

    #[test]
    fn ramps_and_rates_parse() {
        assert_eq!(
            parse_ramp("10:500:2m"),
            Ok(Ramp {
                from: 10.0,
                to: 500.0,
                over: Some(Duration::from_secs(120))
            })
        );
        assert_eq!(parse_ramp("0:5").unwrap().over, None);
        assert!(parse_ramp("10").is_err());
        assert!(parse_ramp("-1:5").is_err());
        assert_eq!(parse_rate("1%"), Ok(0.01));
        assert_eq!(parse_rate("0.05"), Ok(0.05));
        assert!(parse_rate("150%").is_err());
    }

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn modes_come_from_the_flags() {
        let c = cli(&["--workers", "4", "--requests", "10"]).config().unwrap();
        assert!(matches!(
            c.mode,
            Mode::Closed {
                workers: 4,
                requests_per_worker: Some(10),
                ..
            }
        ));
        assert_eq!(c.execute, "http://127.0.0.1:8080/execute");
        let c = cli(&["--rate", "20", "--duration", "2s", "--watch-metrics"])
            .config()
            .unwrap();
        assert!(matches!(c.mode, Mode::Open { .. }));
        assert_eq!(c.watch[0], "http://127.0.0.1:9090/metrics");
        let c = cli(&["--ramp", "10:500", "--duration", "2m"]).config().unwrap();
        let Mode::Open { schedule, .. } = c.mode else {
            panic!()
        };
        assert_eq!(schedule.over, 120.0);
        assert!(cli(&["--workers", "4"]).config().is_err(), "unbounded");
        assert!(cli(&["--rate", "4"]).config().is_err(), "unbounded");
        assert!(cli(&[]).config().is_err(), "no mode");
        assert!(
            cli(&["--ramp", "1:2", "--requests", "5"]).config().is_err(),
            "ramp length"
        );
        assert!(Cli::try_parse_from(["loadtest", "--workers", "1", "--rate", "2"]).is_err());
        let t = cli(&["--max-p99", "250ms", "--max-error-rate", "1%"]).thresholds();
        assert_eq!(t.max_p99_ms, Some(250.0));
        assert_eq!(t.max_error_rate, Some(0.01));
    }
}
