//! `--watch-metrics`: scrapes gateway/executor `/metrics` pages during a run and keeps the series
//! an operator sizes by (in-flight executions, queue depth, ready backends = replica count, and
//! the slot-busy seconds whose rate over the slots is the utilisation the autoscaler scales on).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http::Uri;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client;
use crate::report::MetricSample;

/// The series kept from each page; a bare name sums every label set.
pub const SERIES: &[&str] = &[
    "gateway_inflight_requests",
    "gateway_pending_requests",
    "gateway_backends{state=\"ready\"}",
    "executor_inflight_executions",
    "executor_queue_depth",
    "executor_concurrency_limit",
    BUSY_SECONDS,
];

/// The executors' slot-busy counter: the plot shows its rate over
/// `executor_concurrency_limit`, the utilisation the autoscaler scales on.
pub const BUSY_SECONDS: &str = "executor_busy_seconds_total";

/// `1` when the page was scraped, `0` when it was not (as Prometheus's `up`).
pub const UP: &str = "up";

/// Splits a sample line into (`name`, `name{labels}`, value).
fn parse_line(line: &str) -> Option<(&str, &str, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let series_end = if line[name_end..].starts_with('{') {
        // The closing brace outside quoted label values.
        let mut quoted = false;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in line.char_indices().skip(name_end) {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '}' if !quoted => {
                    end = Some(i + 1);
                    break;
                }
                _ => {}
            }
        }
        end?
    } else {
        name_end
    };
    let value = line[series_end..].split_whitespace().next()?.parse().ok()?;
    Some((&line[..name_end], &line[..series_end], value))
}

/// The selected series of a Prometheus text page.
pub fn select(text: &str, series: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (name, full, value) in text.lines().filter_map(parse_line) {
        for &want in series {
            if want == full || want == name {
                *out.entry(want.to_owned()).or_insert(0.0) += value;
            }
        }
    }
    out
}

/// A background scraper; [`Watcher::finish`] stops it and returns the samples.
#[derive(Debug)]
pub struct Watcher {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Vec<MetricSample>>>,
}

impl Watcher {
    pub fn start(urls: Vec<Uri>, interval: Duration, start: Instant) -> Watcher {
        if urls.is_empty() {
            return Watcher {
                stop: None,
                task: None,
            };
        }
        let (tx, mut rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let client = client::new_client(1);
            let mut samples = Vec::new();
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = &mut rx => break,
                }
                let scrapes = urls.iter().map(|u| async {
                    let page = client::get(&client, u, interval.max(Duration::from_secs(1))).await;
                    let t_s = start.elapsed().as_secs_f64();
                    let mut values = match &page {
                        Some((200, body)) => select(&String::from_utf8_lossy(body), SERIES),
                        _ => BTreeMap::new(),
                    };
                    values.insert(UP.into(), if matches!(page, Some((200, _))) { 1.0 } else { 0.0 });
                    MetricSample {
                        t_s,
                        url: u.to_string(),
                        values,
                    }
                });
                samples.extend(futures::future::join_all(scrapes).await);
            }
            samples
        });
        Watcher {
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn finish(mut self) -> Vec<MetricSample> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP gateway_inflight_requests Requests in flight.
# TYPE gateway_inflight_requests gauge
gateway_inflight_requests 3
gateway_backends{state="ready"} 2
gateway_backends{state="not_ready"} 1
gateway_requests_total{code="200"} 10
gateway_requests_total{code="429"} 5
executor_inflight_executions 4 1700000000000
odd{msg="a } b",x="y"} 7
"#;

    #[test]
    fn selected_series_are_read_and_summed() {
        let v = select(
            PAGE,
            &[
                "gateway_inflight_requests",
                "gateway_backends{state=\"ready\"}",
                "gateway_backends",
                "gateway_requests_total",
                "executor_inflight_executions",
                "odd",
                "absent",
            ],
        );
        assert_eq!(v["gateway_inflight_requests"], 3.0);
        assert_eq!(v["gateway_backends{state=\"ready\"}"], 2.0);
        assert_eq!(v["gateway_backends"], 3.0);
        assert_eq!(v["gateway_requests_total"], 15.0);
        assert_eq!(v["executor_inflight_executions"], 4.0);
        assert_eq!(v["odd"], 7.0);
        assert!(!v.contains_key("absent"));
    }
}
