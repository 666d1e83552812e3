//! Reading values out of a Prometheus text page (`GET /metrics`) with `prometheus-parse`.

use std::collections::{BTreeMap, BTreeSet};

use prometheus_parse::{Scrape, Value};

/// A parsed `/metrics` page. Shown with `{}` it prints the page as it came, for assertion
/// messages.
#[derive(Debug, Clone)]
pub struct Metrics {
    text: String,
    scrape: Scrape,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = Scrape::parse(lines).expect("reading from a string cannot fail");
        Metrics {
            text: text.to_owned(),
            scrape,
        }
    }

    /// The page as it came.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value of a series: `name` or `name{label="value",…}`, summed over every sample of
    /// `name` whose labels include the given ones (so a selector keeps working when a label is
    /// added). Counters, gauges and untyped samples count, as do a histogram's `name_sum` and
    /// `name_count`; `None` when no sample matches.
    ///
    /// ```
    /// let m = testkit::Metrics::parse("a_total{code=\"200\",x=\"1\"} 3\na_total{code=\"500\"} 1\n");
    /// assert_eq!(m.value("a_total"), Some(4.0));
    /// assert_eq!(m.value("a_total{code=\"200\"}"), Some(3.0));
    /// assert_eq!(m.value("a_total{code=\"404\"}"), None);
    /// ```
    #[track_caller]
    pub fn value(&self, series: &str) -> Option<f64> {
        let (name, want) = parse_selector(series);
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| want.iter().all(|(k, v)| s.labels.get(k) == Some(v.as_str())))
            .filter_map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
                Value::Histogram(_) | Value::Summary(_) => None,
            })
            .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
    }

    /// Every metric name on the page (a histogram under its own name, not `_bucket`).
    pub fn names(&self) -> BTreeSet<String> {
        self.scrape.samples.iter().map(|s| s.metric.clone()).collect()
    }

    /// The label names `name` is exported with (a histogram's without `le`), over all its
    /// samples; `None` when the page has no sample of it.
    pub fn label_names(&self, name: &str) -> Option<BTreeSet<String>> {
        let mut found = false;
        let mut labels = BTreeSet::new();
        for s in self.scrape.samples.iter().filter(|s| s.metric == name) {
            found = true;
            labels.extend(s.labels.keys().cloned());
        }
        found.then_some(labels)
    }

    /// The values each label of `name` takes, e.g. `status` → {`ok`, `timeout`}.
    pub fn label_values(&self, name: &str) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for s in self.scrape.samples.iter().filter(|s| s.metric == name) {
            for (k, v) in s.labels.iter() {
                out.entry(k.clone()).or_default().insert(v.clone());
            }
        }
        out
    }

    /// The `# HELP` text of `name`.
    pub fn help(&self, name: &str) -> Option<&str> {
        self.scrape.docs.get(name).map(String::as_str)
    }
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// [`Metrics::value`] of `series` on the page `text`.
#[track_caller]
pub fn metric(text: &str, series: &str) -> Option<f64> {
    Metrics::parse(text).value(series)
}

/// `name{a="x",b="y"}` → (`name`, [(a, x), (b, y)]).
#[track_caller]
fn parse_selector(series: &str) -> (&str, Vec<(String, String)>) {
    let series = series.trim();
    let Some((name, rest)) = series.split_once('{') else {
        return (series, Vec::new());
    };
    let bad = || -> ! { panic!("bad series selector {series:?}: expected name{{label=\"value\",…}}") };
    let Some(body) = rest.strip_suffix('}') else { bad() };
    let mut labels = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let Some((key, tail)) = rest.split_once('=') else {
            bad()
        };
        let Some(tail) = tail.trim_start().strip_prefix('"') else {
            bad()
        };
        let Some(end) = tail.find('"') else { bad() };
        labels.push((key.trim().to_owned(), tail[..end].to_owned()));
        rest = tail[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    (name.trim(), labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP executor_executions_total Executions by outcome.
# TYPE executor_executions_total counter
executor_executions_total{runtime="python",status="ok"} 5
executor_executions_total{runtime="python",status="timeout"} 2
# HELP executor_inflight_executions Executions running now.
# TYPE executor_inflight_executions gauge
executor_inflight_executions 0
# HELP gateway_backends Executors by state.
# TYPE gateway_backends gauge
gateway_backends{state="ready"} 3
gateway_backends{state="ejected"} 0
# HELP executor_execution_duration_seconds Run time.
# TYPE executor_execution_duration_seconds histogram
executor_execution_duration_seconds_bucket{runtime="python",le="0.005"} 1
executor_execution_duration_seconds_bucket{runtime="python",le="+Inf"} 7
executor_execution_duration_seconds_sum{runtime="python"} 0.25
executor_execution_duration_seconds_count{runtime="python"} 7
"#;

    #[test]
    fn values_by_name_and_by_labels() {
        let m = Metrics::parse(PAGE);
        assert_eq!(m.value("executor_inflight_executions"), Some(0.0));
        assert_eq!(m.value("executor_executions_total"), Some(7.0));
        assert_eq!(
            m.value("executor_executions_total{status=\"timeout\"}"),
            Some(2.0)
        );
        assert_eq!(
            m.value(r#"executor_executions_total{ status = "ok", runtime="python" }"#),
            Some(5.0)
        );
        assert_eq!(m.value("executor_executions_total{status=\"error\"}"), None);
        assert_eq!(m.value("gateway_backends{state=\"ready\"}"), Some(3.0));
        assert_eq!(m.value("executor_execution_duration_seconds_count"), Some(7.0));
        assert_eq!(m.value("executor_execution_duration_seconds"), None);
        assert_eq!(m.value("nope"), None);
        assert_eq!(metric(PAGE, "gateway_backends{state=\"ejected\"}"), Some(0.0));
    }

    #[test]
    fn names_labels_and_help() {
        let m = Metrics::parse(PAGE);
        assert!(m.names().contains("executor_execution_duration_seconds"));
        let labels = |n: &str| m.label_names(n).map(|s| s.into_iter().collect::<Vec<_>>());
        assert_eq!(
            labels("executor_executions_total").unwrap(),
            ["runtime", "status"]
        );
        assert_eq!(
            labels("executor_execution_duration_seconds").unwrap(),
            ["runtime"]
        );
        assert_eq!(
            labels("executor_inflight_executions").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(labels("nope"), None);
        assert_eq!(
            m.label_values("gateway_backends")["state"],
            BTreeSet::from(["ready".to_owned(), "ejected".to_owned()])
        );
        assert_eq!(
            m.help("executor_inflight_executions"),
            Some("Executions running now.")
        );
        assert!(m.to_string().starts_with("# HELP"));
    }

    #[test]
    #[should_panic(expected = "bad series selector")]
    fn a_bad_selector_is_a_test_bug() {
        Metrics::parse(PAGE).value("gateway_backends{state=ready}");
    }
}
