//! The executor's Prometheus metrics: registered once per [`Metrics`] value
//! (not globally, so tests and an embedding gateway can hold several).
//!
//! Names follow `executor_<name>_<unit>[_total]`; labels come from small
//! fixed sets: `runtime` (the runtimes this process serves), `status`
//! ([`Status::ALL`]) and `reason` ([`ErrorCode::ALL`]), every series
//! registered up front so a `rate()` never meets one that appears late.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use runbox_api::{ErrorCode, Status};

pub const EXECUTIONS_TOTAL: &str = "executor_executions_total";
pub const EXECUTION_DURATION_SECONDS: &str = "executor_execution_duration_seconds";
pub const FUEL_CONSUMED: &str = "executor_fuel_consumed";
pub const INFLIGHT_EXECUTIONS: &str = "executor_inflight_executions";
pub const QUEUE_DEPTH: &str = "executor_queue_depth";
pub const CONCURRENCY_LIMIT: &str = "executor_concurrency_limit";
pub const REJECTED_TOTAL: &str = "executor_rejected_total";
pub const READY: &str = "executor_ready";

const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const FUEL_BUCKETS: [f64; 9] = [1e6, 1e7, 3e7, 1e8, 3e8, 1e9, 3e9, 1e10, 1e11];

#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: Option<PrometheusRecorder>,
    handle: PrometheusHandle,
    runtimes: Vec<PerRuntime>,
    inflight: Gauge,
    queue_depth: Gauge,
    concurrency_limit: Gauge,
    ready: Gauge,
    rejected: Vec<(ErrorCode, Counter)>,
}

/// The series of one runtime.
struct PerRuntime {
    name: String,
    executions: Vec<(Status, Counter)>,
    duration: Histogram,
    fuel: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics for a process serving `runtimes`.
    pub fn new(runtimes: &[&str]) -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(EXECUTION_DURATION_SECONDS.into()),
                &DURATION_BUCKETS,
            )
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(FUEL_CONSUMED.into()), &FUEL_BUCKETS))
            .expect("bucket lists are non-empty")
            .build_recorder();
        let handle = recorder.handle();
        let mut inner = metrics::with_local_recorder(&recorder, || register(handle, runtimes));
        inner.recorder = Some(recorder);
        Metrics {
            inner: Arc::new(inner),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.inner.handle.run_upkeep();
        self.inner.handle.render()
    }

    /// One finished execution of `runtime` (a runtime this process serves).
    pub fn execution(&self, runtime: &str, status: Status, duration: Duration, fuel: Option<u64>) {
        let Some(series) = self.inner.runtimes.iter().find(|r| r.name == runtime) else {
            debug_assert!(false, "metrics for unregistered runtime {runtime}");
            return;
        };
        if let Some((_, c)) = series.executions.iter().find(|(s, _)| *s == status) {
            c.increment(1);
        }
        series.duration.record(duration.as_secs_f64());
        if let Some(fuel) = fuel {
            // Precision loss above 2^53 fuel units is irrelevant for buckets.
            #[allow(clippy::cast_precision_loss)]
            series.fuel.record(fuel as f64);
        }
    }

    /// A request answered with the error `code` instead of an execution.
    pub fn rejected(&self, code: ErrorCode) {
        if let Some((_, c)) = self.inner.rejected.iter().find(|(r, _)| *r == code) {
            c.increment(1);
        }
    }

    pub fn set_inflight(&self, n: usize) {
        self.inner.inflight.set(n as f64);
    }

    pub fn set_queue_depth(&self, n: usize) {
        self.inner.queue_depth.set(n as f64);
    }

    pub fn set_concurrency_limit(&self, n: usize) {
        self.inner.concurrency_limit.set(n as f64);
    }

    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.set(if ready { 1.0 } else { 0.0 });
    }
}

fn register(handle: PrometheusHandle, runtimes: &[&str]) -> Inner {
    metrics::describe_counter!(
        EXECUTIONS_TOTAL,
        "Executions of guest code, by runtime and outcome status."
    );
    metrics::describe_histogram!(
        EXECUTION_DURATION_SECONDS,
        Unit::Seconds,
        "Wall-clock time of one execution, from instantiation to exit."
    );
    metrics::describe_histogram!(
        FUEL_CONSUMED,
        Unit::Count,
        "Fuel (wasmtime CPU budget units) burnt by one execution; not recorded after a timeout."
    );
    metrics::describe_gauge!(
        INFLIGHT_EXECUTIONS,
        "Executions running now; the autoscaling signal."
    );
    metrics::describe_gauge!(QUEUE_DEPTH, "Requests waiting for an execution slot.");
    metrics::describe_gauge!(CONCURRENCY_LIMIT, "Executions this executor runs at once.");
    metrics::describe_gauge!(
        READY,
        "1 when the runtime is loaded and the executor is not draining."
    );
    metrics::describe_counter!(
        REJECTED_TOTAL,
        "Requests answered with an error instead of an execution, by error code."
    );
    Inner {
        recorder: None,
        handle,
        runtimes: runtimes
            .iter()
            .map(|name| PerRuntime {
                name: (*name).to_owned(),
                executions: Status::ALL
                    .iter()
                    .map(|s| {
                        let labels = [("runtime", (*name).to_owned()), ("status", s.as_str().to_owned())];
                        (*s, metrics::counter!(EXECUTIONS_TOTAL, &labels))
                    })
                    .collect(),
                duration: metrics::histogram!(EXECUTION_DURATION_SECONDS, "runtime" => (*name).to_owned()),
                fuel: metrics::histogram!(FUEL_CONSUMED, "runtime" => (*name).to_owned()),
            })
            .collect(),
        inflight: metrics::gauge!(INFLIGHT_EXECUTIONS),
        queue_depth: metrics::gauge!(QUEUE_DEPTH),
        concurrency_limit: metrics::gauge!(CONCURRENCY_LIMIT),
        ready: metrics::gauge!(READY),
        rejected: ErrorCode::ALL
            .iter()
            .map(|r| (*r, metrics::counter!(REJECTED_TOTAL, "reason" => r.as_str())))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_rendered_with_help_and_buckets() {
        let m = Metrics::new(&["python"]);
        m.execution("python", Status::Ok, Duration::from_millis(3), Some(5_000_000));
        m.rejected(ErrorCode::Overloaded);
        m.set_inflight(2);
        let text = m.render();
        for name in [
            EXECUTIONS_TOTAL,
            EXECUTION_DURATION_SECONDS,
            FUEL_CONSUMED,
            INFLIGHT_EXECUTIONS,
            QUEUE_DEPTH,
            CONCURRENCY_LIMIT,
            REJECTED_TOTAL,
        ] {
            assert!(
                text.contains(&format!("# HELP {name}")),
                "no HELP for {name}:\n{text}"
            );
        }
        assert!(
            text.contains("executor_executions_total{runtime=\"python\",status=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("executor_executions_total{runtime=\"python\",status=\"timeout\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("executor_execution_duration_seconds_bucket{runtime=\"python\",le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("executor_rejected_total{reason=\"overloaded\"} 1"),
            "{text}"
        );
        assert!(text.contains("executor_inflight_executions 2"), "{text}");
        for code in ErrorCode::ALL {
            let series = format!("executor_rejected_total{{reason=\"{code}\"}}");
            assert!(text.contains(&series), "{series} is registered up front");
        }
    }

    #[test]
    fn two_instances_do_not_share_counts() {
        let (a, b) = (Metrics::new(&["python"]), Metrics::new(&["python"]));
        a.rejected(ErrorCode::Internal);
        assert!(
            a.render()
                .contains("executor_rejected_total{reason=\"internal\"} 1")
        );
        assert!(
            b.render()
                .contains("executor_rejected_total{reason=\"internal\"} 0")
        );
    }
}
