//! The executor's Prometheus metrics: registered once per [`Metrics`] value
//! (not globally, so tests and an embedding gateway can hold several).
//!
//! Names follow `executor_<name>_<unit>[_total]`; labels come from small
//! fixed sets: `runtime` (the runtimes this process serves), `status`
//! ([`Status::ALL`]) and `reason` ([`ErrorCode::ALL`]), every series
//! registered up front so a `rate()` never meets one that appears late.
//!
//! The autoscaling signal is [`BUSY_SECONDS_TOTAL`]: execution-slot time
//! summed over slots, so `rate(executor_busy_seconds_total[1m]) /
//! executor_concurrency_limit` is the pod's utilisation over the window
//! (Little's law), as exact for 4 ms runs as for 4 s runs. A slot still held
//! is credited up to the scrape ([`TimeSpent`]), so a long run is seen while
//! it runs. These `_seconds_total` counters are fractional, which the
//! `metrics` facade's integer counters cannot hold, so [`Metrics::render`]
//! writes them itself.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use metrics::{Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use runbox_api::{ErrorCode, Status};

pub const EXECUTIONS_TOTAL: &str = "executor_executions_total";
pub const EXECUTION_DURATION_SECONDS: &str = "executor_execution_duration_seconds";
pub const FUEL_CONSUMED: &str = "executor_fuel_consumed";
pub const INFLIGHT_EXECUTIONS: &str = "executor_inflight_executions";
pub const QUEUE_DEPTH: &str = "executor_queue_depth";
pub const CONCURRENCY_LIMIT: &str = "executor_concurrency_limit";
pub const BUSY_SECONDS_TOTAL: &str = "executor_busy_seconds_total";
pub const QUEUE_WAIT_SECONDS_TOTAL: &str = "executor_queue_wait_seconds_total";
pub const REJECTED_TOTAL: &str = "executor_rejected_total";
pub const READY: &str = "executor_ready";

const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const BUSY_HELP: &str = "Execution-slot time, summed over slots: seconds a slot was held by a request, \
     running ones counted up to the scrape. rate() of it over executor_concurrency_limit is the \
     utilisation, the autoscaling signal.";
const QUEUE_WAIT_HELP: &str = "Seconds requests spent waiting in the queue for an execution slot, summed over \
     requests, whether they got a slot, timed out or were abandoned; waiting ones counted up to the scrape.";

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
    busy: Arc<TimeSpent>,
    queue_wait: Arc<TimeSpent>,
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
        let mut text = self.inner.handle.render();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for (name, help, spent) in [
            (BUSY_SECONDS_TOTAL, BUSY_HELP, &self.inner.busy),
            (QUEUE_WAIT_SECONDS_TOTAL, QUEUE_WAIT_HELP, &self.inner.queue_wait),
        ] {
            let seconds = spent.total().as_secs_f64();
            let _ = write!(
                text,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {seconds}\n\n"
            );
        }
        text
    }

    /// An execution slot held until the returned guard drops.
    pub fn slot_busy(&self) -> Interval {
        self.inner.busy.start()
    }

    /// A request waiting for a slot until the returned guard drops.
    pub fn queue_wait(&self) -> Interval {
        self.inner.queue_wait.start()
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
        "Executions running now (an instant's view, for dashboards; scaling uses executor_busy_seconds_total)."
    );
    metrics::describe_gauge!(QUEUE_DEPTH, "Requests waiting for an execution slot.");
    metrics::describe_gauge!(
        CONCURRENCY_LIMIT,
        "Execution slots: executions this executor runs at once."
    );
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
        busy: Arc::new(TimeSpent::new()),
        queue_wait: Arc::new(TimeSpent::new()),
    }
}

/// Time summed over intervals, the open ones included up to now. Each
/// interval adds `min(now, end) - start`, so the total never goes down and no
/// moment is counted twice: a scrape during a 30 s run sees the part so far,
/// and the end adds only the rest.
#[derive(Debug)]
pub struct TimeSpent {
    state: Mutex<Spent>,
}

#[derive(Debug)]
struct Spent {
    /// Where offsets are measured from.
    base: Instant,
    /// Summed length of the intervals that ended.
    closed: Duration,
    /// Intervals open now.
    open: u32,
    /// Summed start offsets (from `base`) of the open intervals.
    open_starts: Duration,
}

impl TimeSpent {
    pub fn new() -> TimeSpent {
        TimeSpent {
            state: Mutex::new(Spent {
                base: Instant::now(),
                closed: Duration::ZERO,
                open: 0,
                open_starts: Duration::ZERO,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Spent> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens an interval, closed when the guard drops.
    pub fn start(self: &Arc<Self>) -> Interval {
        let mut s = self.lock();
        let offset = Instant::now() - s.base;
        s.open += 1;
        s.open_starts += offset;
        Interval {
            spent: Arc::clone(self),
            offset,
        }
    }

    /// The ended intervals' length plus the open ones' so far.
    pub fn total(&self) -> Duration {
        let s = self.lock();
        let now = Instant::now() - s.base;
        // Every open start is at most `now`, so this never underflows.
        s.closed + (now * s.open).saturating_sub(s.open_starts)
    }
}

impl Default for TimeSpent {
    fn default() -> Self {
        Self::new()
    }
}

/// One open interval of a [`TimeSpent`]; closes it on drop.
#[derive(Debug)]
pub struct Interval {
    spent: Arc<TimeSpent>,
    /// Its start, as an offset from the [`TimeSpent`]'s base.
    offset: Duration,
}

impl Drop for Interval {
    fn drop(&mut self) {
        let mut s = self.spent.lock();
        let now = Instant::now() - s.base;
        s.open -= 1;
        s.open_starts = s.open_starts.saturating_sub(self.offset);
        s.closed += now.saturating_sub(self.offset);
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
            BUSY_SECONDS_TOTAL,
            QUEUE_WAIT_SECONDS_TOTAL,
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
        assert!(
            text.contains("# TYPE executor_busy_seconds_total counter\nexecutor_busy_seconds_total 0\n"),
            "{text}"
        );
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

    #[tokio::test(start_paused = true)]
    async fn time_spent_counts_open_intervals_up_to_now_and_never_twice() {
        let spent = Arc::new(TimeSpent::new());
        let a = spent.start();
        tokio::time::advance(Duration::from_secs(1)).await;
        let b = spent.start();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(spent.total(), Duration::from_secs(3), "a 2 s so far, b 1 s");
        drop(a);
        assert_eq!(
            spent.total(),
            Duration::from_secs(3),
            "closing adds nothing already seen"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(spent.total(), Duration::from_secs(5), "b runs on alone");
        drop(b);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            spent.total(),
            Duration::from_secs(5),
            "nothing open, nothing added"
        );
    }
}
