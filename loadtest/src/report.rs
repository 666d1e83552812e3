//! The report of one run: the JSON document (`--json`, stable field names), the final table, the
//! fairness figure and the thresholds that set the exit code.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Identifies the JSON format; bumped on any incompatible change.
pub const SCHEMA: &str = "runbox-loadtest/1";

/// Request totals. `sent = responses + transport_errors`; `sent = good + errors + wrong_results`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests that finished (answered, failed or cancelled).
    pub sent: u64,
    /// Requests that got an HTTP response, whatever its code.
    pub responses: u64,
    /// Requests without an HTTP response (see `transport_errors` by kind).
    pub transport_errors: u64,
    /// Transport errors plus responses whose HTTP code was not the expected one (default 200).
    pub errors: u64,
    /// Responses with the expected HTTP code whose body differs from the expectation.
    pub wrong_results: u64,
    /// Neither errors nor wrong results.
    pub good: u64,
}

/// Latency percentiles in milliseconds (HDR histogram, 3 significant digits).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub stdev_ms: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SnippetReport {
    pub name: String,
    pub weight: u32,
    pub sent: u64,
    pub errors: u64,
    pub wrong_results: u64,
    pub by_status: BTreeMap<String, u64>,
    pub latency_ms: LatencySummary,
}

/// One second of the run (by completion time, except `sent` and `offered`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub t_s: u64,
    /// Requests that went out in this second.
    pub sent: u64,
    /// Requests scheduled for this second (open loop; equals `sent` in closed loop when keeping up).
    pub offered: u64,
    pub completed: u64,
    pub errors: u64,
    pub wrong: u64,
    /// The most requests this client had in flight during the second.
    pub inflight_max: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WrongExample {
    pub snippet: String,
    pub problem: String,
}

/// One scrape of a `/metrics` page during the run (`--watch-metrics`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    pub t_s: f64,
    pub url: String,
    /// Series name (as selected) → value; summed over label sets for a bare name.
    pub values: BTreeMap<String, f64>,
}

/// How the run was driven.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// `closed` or `open`.
    pub mode: String,
    pub workers: Option<u64>,
    /// Per worker in closed loop, in total in open loop.
    pub requests: Option<u64>,
    pub duration_s: Option<f64>,
    /// Open loop: the constant rate, or the rate at the end of the ramp.
    pub rate_rps: Option<f64>,
    /// Open loop with `--ramp`: the starting rate and the ramp's length.
    pub ramp_from_rps: Option<f64>,
    pub ramp_over_s: Option<f64>,
    pub max_inflight: Option<u64>,
    pub timeout_ms: u64,
    pub warmup: u64,
    pub seed: u64,
}

/// Limits given on the command line; missing any sets a non-zero exit code.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub max_error_rate: Option<f64>,
    pub max_p99_ms: Option<f64>,
    pub max_wrong: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    pub passed: bool,
    pub failures: Vec<String>,
}

impl Thresholds {
    pub fn is_empty(&self) -> bool {
        self.max_error_rate.is_none() && self.max_p99_ms.is_none() && self.max_wrong.is_none()
    }

    pub fn check(&self, r: &Report) -> ThresholdResult {
        let mut failures = Vec::new();
        if let Some(max) = self.max_error_rate
            && r.error_rate > max
        {
            failures.push(format!(
                "error rate {:.4} > {max} ({} errors in {} requests)",
                r.error_rate, r.counts.errors, r.counts.sent
            ));
        }
        if let Some(max) = self.max_p99_ms
            && r.latency_ms.p99_ms > max
        {
            failures.push(format!("p99 {:.1} ms > {max} ms", r.latency_ms.p99_ms));
        }
        if let Some(max) = self.max_wrong
            && r.counts.wrong_results > max
        {
            failures.push(format!("{} wrong results > {max}", r.counts.wrong_results));
        }
        if r.counts.sent == 0 && !self.is_empty() {
            failures.push("no request finished".into());
        }
        ThresholdResult {
            passed: failures.is_empty(),
            failures,
        }
    }
}

/// Everything about one run. Field names are stable (see [`SCHEMA`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub label: String,
    pub target: String,
    pub scenario: String,
    pub settings: RunSettings,
    /// Unix time of the start, in milliseconds.
    pub started_at_unix_ms: u64,
    /// From the first send to the last answer.
    pub elapsed_s: f64,
    /// Stopped by Ctrl-C: the figures cover the run so far.
    pub interrupted: bool,
    pub counts: Counts,
    pub error_rate: f64,
    pub wrong_rate: f64,
    /// Finished requests per second.
    pub throughput_rps: f64,
    /// Good requests (neither errors nor wrong) per second.
    pub goodput_rps: f64,
    /// `send` (closed loop) or `intended_send` (open loop: no coordinated omission).
    pub latency_basis: String,
    pub latency_ms: LatencySummary,
    /// From the actual send, whatever the mode.
    pub service_time_ms: LatencySummary,
    /// HTTP code → responses. Sums to `counts.responses`.
    pub by_http_code: BTreeMap<String, u64>,
    /// Execution `status` → responses; a response without one counts as `http_<code>`.
    /// Sums to `counts.responses`.
    pub by_status: BTreeMap<String, u64>,
    /// The API error `code` of non-200 answers.
    pub by_error_code: BTreeMap<String, u64>,
    /// The `limit.kind` of results that a limit ended or cut (`timeout`, `fuel`, `memory`,
    /// `output`). Absent from reports written before it existed.
    #[serde(default)]
    pub by_limit: BTreeMap<String, u64>,
    /// Transport error kind (`connect`, `timeout`, `io`, `cancelled`) → requests.
    pub transport_errors: BTreeMap<String, u64>,
    /// `x-runbox-executor` (else the body's `executor`) → responses.
    pub executors: BTreeMap<String, u64>,
    /// Largest over smallest executor share; 1.0 is perfectly even. `null` with no executor.
    pub fairness: Option<f64>,
    pub snippets: Vec<SnippetReport>,
    pub wrong_examples: Vec<WrongExample>,
    pub timeline: Vec<TimelinePoint>,
    pub metrics: Vec<MetricSample>,
    pub thresholds: Thresholds,
    pub threshold_result: ThresholdResult,
}

/// max/min of the per-executor counts.
pub fn fairness(executors: &BTreeMap<String, u64>) -> Option<f64> {
    let max = *executors.values().max()?;
    let min = *executors.values().min()?;
    (min > 0).then(|| max as f64 / min as f64)
}

fn map_line(map: &BTreeMap<String, u64>, total: u64) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}: {v} ({})", percent(*v, total)))
        .collect::<Vec<_>>()
        .join("   ")
}

fn percent(n: u64, total: u64) -> String {
    if total == 0 {
        return "-".into();
    }
    format!("{:.1}%", 100.0 * n as f64 / total as f64)
}

fn latency_line(l: &LatencySummary) -> String {
    format!(
        "min {:.2}  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (mean {:.2})",
        l.min_ms, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms
    )
}

impl Report {
    /// One line saying how the run was driven.
    pub fn describe(&self) -> String {
        let s = &self.settings;
        let bound = match (s.requests, s.duration_s) {
            (Some(n), Some(d)) => format!("{n} requests or {d} s"),
            (Some(n), None) => format!("{n} requests"),
            (None, Some(d)) => format!("{d} s"),
            (None, None) => "unbounded".into(),
        };
        match s.mode.as_str() {
            "closed" => format!(
                "closed loop, {} workers × {}",
                s.workers.unwrap_or(0),
                if s.requests.is_some() {
                    bound
                } else {
                    format!("for {bound}")
                }
            ),
            _ => match s.ramp_from_rps {
                Some(from) => format!(
                    "open loop, ramp {from}→{} req/s over {} s, {bound}",
                    s.rate_rps.unwrap_or(0.0),
                    s.ramp_over_s.unwrap_or(0.0)
                ),
                None => format!("open loop, {} req/s, {bound}", s.rate_rps.unwrap_or(0.0)),
            },
        }
    }

    /// The final table.
    pub fn render(&self) -> String {
        let c = &self.counts;
        let mut out = String::new();
        let _ = writeln!(out, "\n{}", self.label_or_target());
        let _ = writeln!(
            out,
            "  {} · scenario {} · {}{}",
            self.describe(),
            self.scenario,
            self.target,
            if self.interrupted {
                " · INTERRUPTED (report so far)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "  elapsed      {:.2} s   sent {}   throughput {:.1} req/s   goodput {:.1} req/s",
            self.elapsed_s, c.sent, self.throughput_rps, self.goodput_rps
        );
        let basis = if self.latency_basis == "intended_send" {
            "from intended send"
        } else {
            "from send"
        };
        let _ = writeln!(
            out,
            "  latency ms   {}   [{basis}]",
            latency_line(&self.latency_ms)
        );
        if self.latency_basis == "intended_send" {
            let _ = writeln!(
                out,
                "  service ms   {}   [from actual send]",
                latency_line(&self.service_time_ms)
            );
        }
        let _ = writeln!(out, "  HTTP codes   {}", map_line(&self.by_http_code, c.sent));
        let _ = writeln!(out, "  status       {}", map_line(&self.by_status, c.sent));
        if !self.by_limit.is_empty() {
            let _ = writeln!(out, "  limits       {}", map_line(&self.by_limit, c.sent));
        }
        if !self.by_error_code.is_empty() {
            let _ = writeln!(out, "  error codes  {}", map_line(&self.by_error_code, c.sent));
        }
        let _ = writeln!(
            out,
            "  transport    {}",
            if c.transport_errors == 0 {
                "no errors".into()
            } else {
                map_line(&self.transport_errors, c.sent)
            }
        );
        let _ = writeln!(
            out,
            "  errors       {} ({})   wrong results {} ({})",
            c.errors,
            percent(c.errors, c.sent),
            c.wrong_results,
            percent(c.wrong_results, c.sent)
        );
        for w in &self.wrong_examples {
            let _ = writeln!(out, "    wrong: {}: {}", w.snippet, w.problem);
        }
        if !self.executors.is_empty() {
            let _ = writeln!(
                out,
                "  executors    {}",
                map_line(&self.executors, self.executors.values().sum())
            );
            let _ = writeln!(
                out,
                "  fairness     {} (max/min share over {} executors; 1.00 is even)",
                self.fairness.map_or("-".into(), |f| format!("{f:.2}")),
                self.executors.len()
            );
        }
        if self.snippets.len() > 1 {
            let _ = writeln!(
                out,
                "  per snippet  (sent · errors · wrong · p50 / p99 ms · statuses)"
            );
            for s in &self.snippets {
                let statuses = s
                    .by_status
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let _ = writeln!(
                    out,
                    "    {:<16} {:>6} · {} · {} · {:.1} / {:.1} · {statuses}",
                    s.name, s.sent, s.errors, s.wrong_results, s.latency_ms.p50_ms, s.latency_ms.p99_ms
                );
            }
        }
        if !self.thresholds.is_empty() {
            if self.threshold_result.passed {
                let _ = writeln!(out, "  thresholds   passed");
            } else {
                for f in &self.threshold_result.failures {
                    let _ = writeln!(out, "  thresholds   MISSED: {f}");
                }
            }
        }
        out
    }

    /// The label, else the target.
    pub fn label_or_target(&self) -> &str {
        if self.label.is_empty() {
            &self.target
        } else {
            &self.label
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn fairness_is_max_over_min() {
        assert_eq!(fairness(&map(&[("a", 10), ("b", 10), ("c", 10)])), Some(1.0));
        assert_eq!(fairness(&map(&[("a", 30), ("b", 10)])), Some(3.0));
        assert_eq!(fairness(&map(&[("a", 7)])), Some(1.0));
        assert_eq!(fairness(&map(&[])), None);
        assert_eq!(fairness(&map(&[("a", 3), ("b", 0)])), None);
    }

    fn report(errors: u64, wrong: u64, p99: f64) -> Report {
        Report {
            counts: Counts {
                sent: 100,
                responses: 100,
                errors,
                wrong_results: wrong,
                good: 100 - errors - wrong,
                ..Counts::default()
            },
            error_rate: errors as f64 / 100.0,
            latency_ms: LatencySummary {
                p99_ms: p99,
                ..LatencySummary::default()
            },
            ..Report::default()
        }
    }

    #[test]
    fn thresholds_pass_and_fail() {
        let t = Thresholds {
            max_error_rate: Some(0.01),
            max_p99_ms: Some(100.0),
            max_wrong: Some(0),
        };
        assert!(t.check(&report(1, 0, 100.0)).passed);
        let r = t.check(&report(2, 1, 100.5));
        assert!(!r.passed);
        assert_eq!(r.failures.len(), 3, "{:?}", r.failures);
        assert!(Thresholds::default().check(&report(50, 50, 1e9)).passed);
        assert!(!t.check(&Report::default()).passed, "an empty run fails a gate");
    }

    #[test]
    fn the_report_round_trips_through_json() {
        let mut r = report(1, 2, 3.0);
        r.schema = SCHEMA.into();
        r.executors = map(&[("e1", 50), ("e2", 50)]);
        r.fairness = Some(1.0);
        r.timeline.push(TimelinePoint {
            t_s: 0,
            p50_ms: Some(1.5),
            ..TimelinePoint::default()
        });
        let json = serde_json::to_string_pretty(&r).unwrap();
        assert!(json.contains("\"throughput_rps\""));
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        // A report from before `by_limit` still reads back (for `--compare`).
        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        old.as_object_mut().unwrap().remove("by_limit");
        let back: Report = serde_json::from_value(old).unwrap();
        assert_eq!(back, r);
        assert!(r.render().contains("fairness     1.00"));
    }
}
