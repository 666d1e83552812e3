//! SVG plots (plotters): one run over time (`--plot`: latency percentiles, throughput, in-flight
//! and replicas), and latency against throughput across runs (`--curve`).

use std::path::Path;

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::Report;
use crate::watch::{BUSY_SECONDS, SERIES, UP};

const FONT: &str = "sans-serif";

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// One line of a panel.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
}

fn upper(lines: &[Line]) -> f64 {
    let max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    if max > 0.0 { max * 1.1 } else { 1.0 }
}

/// A panel of lines over time; `right` lines (if any) use a second y axis titled `right_desc`.
fn panel(
    area: &Area<'_>,
    title: &str,
    (y_desc, right_desc): (&str, &str),
    x_max: f64,
    lines: &[Line],
    right: &[Line],
) -> Result<()> {
    let right_max = right
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1.0)
        + 1.0;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(60)
        .right_y_label_area_size(if right.is_empty() { 0 } else { 50 })
        .build_cartesian_2d(0f64..x_max, 0f64..upper(lines))?
        .set_secondary_coord(0f64..x_max, 0f64..right_max);
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc(y_desc)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    if !right.is_empty() {
        chart.configure_secondary_axes().y_desc(right_desc).draw()?;
    }
    let style = |i: usize| Palette99::pick(i).to_rgba().stroke_width(2);
    let legend = move |i: usize| move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style(i));
    for (i, line) in lines.iter().enumerate() {
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), style(i)))?
            .label(line.label.clone())
            .legend(legend(i));
    }
    for (j, line) in right.iter().enumerate() {
        let i = lines.len() + j;
        chart
            .draw_secondary_series(LineSeries::new(line.points.iter().copied(), style(i)))?
            .label(format!("{} (right axis)", line.label))
            .legend(legend(i));
    }
    if !lines.is_empty() || !right.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 13))
            .draw()?;
    }
    Ok(())
}

/// A short name for a scraped URL: `host:port`.
fn short(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// The utilisation `url`'s executor reported between consecutive scrapes:
/// the growth of `executor_busy_seconds_total` over the time between them,
/// over `executor_concurrency_limit` (what `rate(busy[…]) / slots` gives
/// Prometheus), at the interval's midpoint.
fn utilisation(report: &Report, url: &str) -> Vec<(f64, f64)> {
    let samples: Vec<(f64, f64, f64)> = report
        .metrics
        .iter()
        .filter(|m| m.url == url && m.values.get(UP) == Some(&1.0))
        .filter_map(|m| {
            let busy = *m.values.get(BUSY_SECONDS)?;
            let slots = *m.values.get("executor_concurrency_limit")?;
            Some((m.t_s, busy, slots))
        })
        .collect();
    samples
        .windows(2)
        .filter_map(|w| {
            let ((t0, b0, _), (t1, b1, slots)) = (w[0], w[1]);
            (t1 > t0 && slots > 0.0).then(|| ((t0 + t1) / 2.0, (b1 - b0).max(0.0) / (t1 - t0) / slots))
        })
        .collect()
}

/// `--plot`: latency percentiles, throughput and in-flight over the run.
pub fn plot_run(report: &Report, path: &Path) -> Result<()> {
    let mid = |t: u64| t as f64 + 0.5;
    let x_max = (report.timeline.len() as f64).max(report.elapsed_s).max(1.0);
    let percentile = |label: &str, get: fn(&crate::report::TimelinePoint) -> Option<f64>| Line {
        label: label.into(),
        points: report
            .timeline
            .iter()
            .filter_map(|p| get(p).map(|v| (mid(p.t_s), v)))
            .collect(),
    };
    let latency = [
        percentile("p50", |p| p.p50_ms),
        percentile("p90", |p| p.p90_ms),
        percentile("p99", |p| p.p99_ms),
    ];
    // Per-second counts; the last, partial second is scaled to a rate (or left out if tiny).
    let elapsed = report.elapsed_s;
    let per_second = |label: &str, get: fn(&crate::report::TimelinePoint) -> u64| Line {
        label: label.into(),
        points: report
            .timeline
            .iter()
            .filter_map(|p| {
                let span = (elapsed - p.t_s as f64).clamp(0.0, 1.0);
                (span >= 0.25).then(|| (mid(p.t_s), get(p) as f64 / span))
            })
            .collect(),
    };
    let mut throughput = vec![per_second("completed/s", |p| p.completed)];
    if report.settings.mode == "open" {
        throughput.push(per_second("offered/s", |p| p.offered));
    }
    if report.counts.errors > 0 {
        throughput.push(per_second("errors/s", |p| p.errors));
    }
    if report.counts.wrong_results > 0 {
        throughput.push(per_second("wrong/s", |p| p.wrong));
    }
    let mut load = vec![Line {
        label: "client in flight (max)".into(),
        points: report
            .timeline
            .iter()
            .map(|p| (mid(p.t_s), p.inflight_max as f64))
            .collect(),
    }];
    let mut replicas = Vec::new();
    let mut urls: Vec<&str> = report.metrics.iter().map(|m| m.url.as_str()).collect();
    urls.dedup();
    urls.sort_unstable();
    urls.dedup();
    for url in urls {
        for series in SERIES.iter().copied().filter(|s| !s.contains("concurrency")) {
            let points: Vec<(f64, f64)> = report
                .metrics
                .iter()
                .filter(|m| m.url == url && m.values.get(UP) == Some(&1.0))
                .filter_map(|m| m.values.get(series).map(|v| (m.t_s, *v)))
                .collect();
            // Replicas always, on their own axis; other series only when they moved off zero.
            if points.is_empty() {
                continue;
            }
            if series == BUSY_SECONDS {
                let points = utilisation(report, url);
                if !points.is_empty() {
                    load.push(Line {
                        label: format!("{} utilisation (rate(busy) / slots)", short(url)),
                        points,
                    });
                }
            } else if series.contains("ready") {
                replicas.push(Line {
                    label: format!("{} ready backends (replicas)", short(url)),
                    points,
                });
            } else if points.iter().any(|p| p.1 != 0.0) {
                load.push(Line {
                    label: format!("{} {series}", short(url)),
                    points,
                });
            }
        }
    }

    let root = SVGBackend::new(path, (1100, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(36);
    title.titled(
        &format!(
            "{} · {} · scenario {}",
            report.label_or_target(),
            report.describe(),
            report.scenario
        ),
        (FONT, 18),
    )?;
    let panels = body.split_evenly((3, 1));
    let basis = if report.latency_basis == "intended_send" {
        "latency per second (ms, from intended send)"
    } else {
        "latency per second (ms)"
    };
    panel(&panels[0], basis, ("ms", ""), x_max, &latency, &[])?;
    panel(
        &panels[1],
        "requests per second",
        ("req/s", ""),
        x_max,
        &throughput,
        &[],
    )?;
    panel(
        &panels[2],
        "in flight and replicas",
        ("requests", "replicas"),
        x_max,
        &load,
        &replicas,
    )?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The x of a run on the curve: the offered rate of an open-loop run, else its throughput.
fn load_of(r: &Report) -> f64 {
    match (r.settings.mode.as_str(), r.settings.rate_rps) {
        ("open", Some(rate)) if r.settings.ramp_from_rps.is_none() => rate,
        _ => r.throughput_rps,
    }
}

/// `--curve`: p50/p90/p99 against the offered rate (open loop) or the achieved throughput
/// (closed loop), one point per run.
pub fn plot_curve(reports: &[Report], path: &Path) -> Result<()> {
    let mut runs: Vec<&Report> = reports.iter().collect();
    runs.sort_by(|a, b| load_of(a).total_cmp(&load_of(b)));
    let open = runs
        .iter()
        .all(|r| r.settings.mode == "open" && r.settings.ramp_from_rps.is_none());
    let line = |label: &str, get: fn(&Report) -> f64| Line {
        label: label.into(),
        points: runs.iter().map(|r| (load_of(r), get(r))).collect(),
    };
    let lines = [
        line("p50", |r| r.latency_ms.p50_ms),
        line("p90", |r| r.latency_ms.p90_ms),
        line("p99", |r| r.latency_ms.p99_ms),
    ];
    let x_max = runs.iter().map(|r| load_of(r)).fold(0.0, f64::max).max(1.0) * 1.1;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = runs
        .first()
        .map_or(String::new(), |r| format!(" · scenario {}", r.scenario));
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("latency against throughput{title}"), (FONT, 18))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..upper(&lines))?;
    chart
        .configure_mesh()
        .x_desc(if open {
            "offered rate (req/s)"
        } else {
            "throughput (req/s)"
        })
        .y_desc("latency (ms)")
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (i, l) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(l.points.iter().copied(), color.stroke_width(2)))?
            .label(l.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(l.points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    for r in &runs {
        chart.draw_series(std::iter::once(Text::new(
            format!("{} ({:.0} req/s done)", r.label_or_target(), r.throughput_rps),
            (load_of(r), r.latency_ms.p99_ms),
            (FONT, 12),
        )))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{MetricSample, TimelinePoint};

    #[test]
    fn plots_are_svg_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Report {
            label: "unit".into(),
            elapsed_s: 3.0,
            ..Report::default()
        };
        r.settings.mode = "open".into();
        r.latency_basis = "intended_send".into();
        for t in 0..3 {
            r.timeline.push(TimelinePoint {
                t_s: t,
                completed: 10 + t,
                offered: 10,
                inflight_max: t,
                p50_ms: Some(1.0 + t as f64),
                p90_ms: Some(2.0 + t as f64),
                p99_ms: Some(4.0 + t as f64),
                ..TimelinePoint::default()
            });
            r.metrics.push(MetricSample {
                t_s: t as f64,
                url: "http://127.0.0.1:1/metrics".into(),
                values: [
                    ("up".to_owned(), 1.0),
                    ("executor_inflight_executions".to_owned(), 2.0),
                    ("executor_concurrency_limit".to_owned(), 2.0),
                    (BUSY_SECONDS.to_owned(), 1.5 * t as f64),
                ]
                .into(),
            });
        }
        let path = dir.path().join("run.svg");
        plot_run(&r, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("127.0.0.1:1 executor_inflight_executions"));
        assert!(svg.contains("127.0.0.1:1 utilisation (rate(busy) / slots)"));
        assert_eq!(
            utilisation(&r, "http://127.0.0.1:1/metrics"),
            vec![(0.5, 0.75), (1.5, 0.75)],
            "1.5 busy seconds a second over 2 slots"
        );

        let path = dir.path().join("curve.svg");
        let mut other = r.clone();
        other.throughput_rps = 50.0;
        plot_curve(&[r, other], &path).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("<svg"));
        assert_eq!(short("http://a:1/metrics"), "a:1");
    }
}
