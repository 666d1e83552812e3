//! Reading reports back: `--compare a.json b.json` (two runs side by side with b/a ratios) and
//! `--summarize` (one row per run), as aligned text or Markdown.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::report::{Report, SCHEMA};

pub fn load(path: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut report: Report = serde_json::from_str(&text)
        .with_context(|| format!("parsing {} as a loadtest report", path.display()))?;
    if report.schema != SCHEMA {
        bail!(
            "{}: schema {:?}, expected {SCHEMA:?}",
            path.display(),
            report.schema
        );
    }
    if report.label.is_empty() {
        report.label = path
            .file_stem()
            .map_or_else(|| report.target.clone(), |s| s.to_string_lossy().into_owned());
    }
    Ok(report)
}

/// `b / a`, or `None` when `a` is zero (a ratio to nothing says nothing).
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (a != 0.0 && a.is_finite() && b.is_finite()).then(|| b / a)
}

/// One compared figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: &'static str,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// Decimals to show.
    pub digits: usize,
}

impl Row {
    pub fn ratio(&self) -> Option<f64> {
        ratio(self.a?, self.b?)
    }
}

pub fn rows(a: &Report, b: &Report) -> Vec<Row> {
    let row = |name, get: fn(&Report) -> Option<f64>, digits| Row {
        name,
        a: get(a),
        b: get(b),
        digits,
    };
    let mut rows = vec![
        row("requests", |r| Some(r.counts.sent as f64), 0),
        row("throughput (req/s)", |r| Some(r.throughput_rps), 1),
        row("goodput (req/s)", |r| Some(r.goodput_rps), 1),
        row("latency min (ms)", |r| Some(r.latency_ms.min_ms), 2),
        row("latency p50 (ms)", |r| Some(r.latency_ms.p50_ms), 2),
        row("latency p90 (ms)", |r| Some(r.latency_ms.p90_ms), 2),
        row("latency p99 (ms)", |r| Some(r.latency_ms.p99_ms), 2),
        row("latency p99.9 (ms)", |r| Some(r.latency_ms.p999_ms), 2),
        row("latency max (ms)", |r| Some(r.latency_ms.max_ms), 2),
        row("latency mean (ms)", |r| Some(r.latency_ms.mean_ms), 2),
    ];
    if a.latency_basis == "intended_send" || b.latency_basis == "intended_send" {
        rows.push(row(
            "service time p99 (ms)",
            |r| Some(r.service_time_ms.p99_ms),
            2,
        ));
    }
    rows.extend([
        row("error rate (%)", |r| Some(100.0 * r.error_rate), 2),
        row("wrong results", |r| Some(r.counts.wrong_results as f64), 0),
        row("executors", |r| Some(r.executors.len() as f64), 0),
        row("fairness (max/min)", |r| r.fairness, 2),
    ]);
    rows
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn times(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}×"))
}

/// Renders rows as a Markdown table or as aligned text.
fn table(header: &[String], body: &[Vec<String>], markdown: bool) -> String {
    let mut out = String::new();
    if markdown {
        out.push_str(&format!("| {} |\n", header.join(" | ")));
        let rule: Vec<&str> = header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---" } else { "---:" })
            .collect();
        out.push_str(&format!("|{}|\n", rule.join("|")));
        for row in body {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        return out;
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            std::iter::once(&header[i])
                .chain(body.iter().map(|r| &r[i]))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(header).chain(body.iter().map(Vec::as_slice)) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Two runs side by side; the last column is b/a.
pub fn render_compare(a: &Report, b: &Report, markdown: bool) -> String {
    let header = vec![
        String::new(),
        a.label_or_target().to_owned(),
        b.label_or_target().to_owned(),
        "ratio (b/a)".to_owned(),
    ];
    let body: Vec<Vec<String>> = rows(a, b)
        .iter()
        .map(|r| {
            vec![
                r.name.to_owned(),
                num(r.a, r.digits),
                num(r.b, r.digits),
                times(r.ratio()),
            ]
        })
        .collect();
    let mut out = String::new();
    if !markdown {
        out.push_str(&format!("a: {} — {}\n", a.label_or_target(), a.describe()));
        out.push_str(&format!("b: {} — {}\n\n", b.label_or_target(), b.describe()));
    }
    out.push_str(&table(&header, &body, markdown));
    out
}

/// API error codes and transport error kinds with their counts, e.g. `overloaded 35`.
fn error_kinds(r: &Report) -> String {
    let kinds: Vec<String> = r
        .by_error_code
        .iter()
        .chain(&r.transport_errors)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if kinds.is_empty() {
        "-".into()
    } else {
        kinds.join(", ")
    }
}

/// One row per run.
pub fn render_summary(reports: &[Report], markdown: bool) -> String {
    let header: Vec<String> = [
        "run",
        "load",
        "req",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "errors",
        "error kinds",
        "wrong",
        "fairness",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let body: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let s = &r.settings;
            let load = match (s.mode.as_str(), s.ramp_from_rps) {
                ("closed", _) => match s.workers.unwrap_or(0) {
                    1 => "1 worker".to_owned(),
                    n => format!("{n} workers"),
                },
                (_, Some(from)) => format!("{from:.0}→{:.0}/s", s.rate_rps.unwrap_or(0.0)),
                _ => format!("{:.1}/s", s.rate_rps.unwrap_or(0.0)),
            };
            vec![
                r.label_or_target().to_owned(),
                load,
                r.counts.sent.to_string(),
                format!("{:.1}", r.throughput_rps),
                format!("{:.2}", r.latency_ms.p50_ms),
                format!("{:.2}", r.latency_ms.p90_ms),
                format!("{:.2}", r.latency_ms.p99_ms),
                format!("{:.2}", r.latency_ms.p999_ms),
                format!("{:.2}", r.latency_ms.max_ms),
                format!("{:.2}%", 100.0 * r.error_rate),
                error_kinds(r),
                r.counts.wrong_results.to_string(),
                num(r.fairness, 2),
            ]
        })
        .collect();
    table(&header, &body, markdown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::LatencySummary;

    fn report(label: &str, rps: f64, p99: f64) -> Report {
        Report {
            schema: SCHEMA.into(),
            label: label.into(),
            throughput_rps: rps,
            latency_ms: LatencySummary {
                p99_ms: p99,
                ..LatencySummary::default()
            },
            ..Report::default()
        }
    }

    #[test]
    fn ratios_are_b_over_a() {
        assert_eq!(ratio(100.0, 150.0), Some(1.5));
        assert_eq!(ratio(0.0, 5.0), None);
        assert_eq!(ratio(2.0, f64::NAN), None);
        let rows = rows(&report("rr", 100.0, 20.0), &report("li", 120.0, 10.0));
        let get = |name: &str| rows.iter().find(|r| r.name == name).unwrap().ratio();
        assert_eq!(get("throughput (req/s)"), Some(1.2));
        assert_eq!(get("latency p99 (ms)"), Some(0.5));
        assert_eq!(get("fairness (max/min)"), None);
    }

    #[test]
    fn tables_render_as_text_and_markdown() {
        let (a, b) = (report("rr", 100.0, 20.0), report("li", 120.0, 10.0));
        let md = render_compare(&a, &b, true);
        assert!(
            md.starts_with("|  | rr | li | ratio (b/a) |\n|---|---:|---:|---:|\n"),
            "{md}"
        );
        assert!(
            md.contains("| throughput (req/s) | 100.0 | 120.0 | 1.20× |"),
            "{md}"
        );
        let text = render_compare(&a, &b, false);
        assert!(text.contains("latency p99 (ms)"), "{text}");
        assert!(text.contains("0.50×"), "{text}");
        let summary = render_summary(&[a, b], true);
        assert_eq!(summary.lines().count(), 4, "{summary}");
    }

    #[test]
    fn loading_checks_the_schema_and_names_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("before.json");
        let mut r = report("", 1.0, 1.0);
        std::fs::write(&path, serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(load(&path).unwrap().label, "before");
        r.schema = "other".into();
        std::fs::write(&path, serde_json::to_string(&r).unwrap()).unwrap();
        assert!(load(&path).is_err());
    }
}
