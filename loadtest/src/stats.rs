//! Live accounting of a run: every finished request lands here once, in HDR histograms, counters
//! and one-second timeline buckets; [`Recorder::finish`] turns it into a [`Report`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::{Body, Outcome};
use crate::report::{Counts, LatencySummary, Report, SnippetReport, TimelinePoint, WrongExample};
use crate::scenario::{Scenario, Verdict};

/// Latencies are recorded in microseconds, from 1 µs to one hour.
const MAX_MICROS: u64 = 3_600_000_000;
/// At most this many wrong answers are kept as examples.
const WRONG_EXAMPLES: usize = 10;

pub fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, sigfig).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(MAX_MICROS)
        .clamp(1, MAX_MICROS)
}

/// Milliseconds at quantile `q` (0..=1) of a µs histogram; 0 when empty.
pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

/// min/mean/p50/p90/p99/p99.9/max of a µs histogram, in milliseconds.
pub fn summarize(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        min_ms: h.min() as f64 / 1000.0,
        mean_ms: h.mean() / 1000.0,
        p50_ms: quantile_ms(h, 0.50),
        p90_ms: quantile_ms(h, 0.90),
        p99_ms: quantile_ms(h, 0.99),
        p999_ms: quantile_ms(h, 0.999),
        max_ms: h.max() as f64 / 1000.0,
        stdev_ms: h.stdev() / 1000.0,
    }
}

/// One finished request.
#[derive(Debug)]
pub struct Sample {
    pub snippet: usize,
    /// When the request should have gone out (open loop) or went out (closed loop).
    pub intended: Instant,
    /// When it went out.
    pub sent: Instant,
    pub finished: Instant,
    pub outcome: Outcome,
}

/// One second of the run.
#[derive(Debug)]
struct Bucket {
    sent: u64,
    offered: u64,
    completed: u64,
    errors: u64,
    wrong: u64,
    inflight_max: u64,
    latency: Histogram<u64>,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            sent: 0,
            offered: 0,
            completed: 0,
            errors: 0,
            wrong: 0,
            inflight_max: 0,
            latency: histogram(2),
        }
    }
}

#[derive(Debug)]
struct PerSnippet {
    sent: u64,
    errors: u64,
    wrong: u64,
    by_status: BTreeMap<String, u64>,
    latency: Histogram<u64>,
}

#[derive(Debug)]
struct Inner {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    counts: Counts,
    by_http_code: BTreeMap<String, u64>,
    by_status: BTreeMap<String, u64>,
    by_error_code: BTreeMap<String, u64>,
    by_limit: BTreeMap<String, u64>,
    transport_errors: BTreeMap<String, u64>,
    executors: BTreeMap<String, u64>,
    snippets: Vec<PerSnippet>,
    timeline: Vec<Bucket>,
    wrong_examples: Vec<WrongExample>,
    last_finish: Option<Instant>,
}

impl Inner {
    fn bucket(&mut self, at: Instant, start: Instant) -> &mut Bucket {
        let i = at.saturating_duration_since(start).as_secs() as usize;
        if self.timeline.len() <= i {
            self.timeline.resize_with(i + 1, Bucket::new);
        }
        &mut self.timeline[i]
    }
}

/// Progress figures for the live display.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub started: u64,
    pub completed: u64,
    pub errors: u64,
    pub wrong: u64,
    /// Completions per second over the last few seconds.
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Shared by every worker of a run.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    scenario: Scenario,
    started: AtomicU64,
    completed: AtomicU64,
    inner: Mutex<Inner>,
}

impl Recorder {
    pub fn new(scenario: Scenario, start: Instant) -> Recorder {
        let snippets = scenario
            .snippets
            .iter()
            .map(|_| PerSnippet {
                sent: 0,
                errors: 0,
                wrong: 0,
                by_status: BTreeMap::new(),
                latency: histogram(3),
            })
            .collect();
        Recorder {
            start,
            scenario,
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                latency: histogram(3),
                service: histogram(3),
                counts: Counts::default(),
                by_http_code: BTreeMap::new(),
                by_status: BTreeMap::new(),
                by_error_code: BTreeMap::new(),
                by_limit: BTreeMap::new(),
                transport_errors: BTreeMap::new(),
                executors: BTreeMap::new(),
                snippets,
                timeline: Vec::new(),
                wrong_examples: Vec::new(),
                last_finish: None,
            }),
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// A request is about to go out.
    pub fn on_send(&self, at: Instant, intended: Instant) {
        self.started.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.inner.lock().expect("recorder lock");
        inner.bucket(at, self.start).sent += 1;
        inner.bucket(intended, self.start).offered += 1;
    }

    /// Requests sent and not yet finished.
    pub fn inflight(&self) -> u64 {
        let completed = self.completed.load(Ordering::Relaxed);
        self.started.load(Ordering::Relaxed).saturating_sub(completed)
    }

    /// Notes the client-side in-flight count in the current second.
    pub fn sample_inflight(&self, now: Instant) {
        let inflight = self.inflight();
        let mut inner = self.inner.lock().expect("recorder lock");
        let bucket = inner.bucket(now, self.start);
        bucket.inflight_max = bucket.inflight_max.max(inflight);
    }

    /// Accounts one finished request.
    pub fn record(&self, sample: Sample) {
        let latency = micros(sample.finished.saturating_duration_since(sample.intended));
        let service = micros(sample.finished.saturating_duration_since(sample.sent));
        let snippet = &self.scenario.snippets[sample.snippet];
        let mut guard = self.inner.lock().expect("recorder lock");
        let inner = &mut *guard;
        inner.counts.sent += 1;
        inner.latency.saturating_record(latency);
        inner.service.saturating_record(service);
        inner.last_finish = Some(
            inner
                .last_finish
                .map_or(sample.finished, |t| t.max(sample.finished)),
        );
        let (mut error, mut wrong) = (false, None);
        let status_key;
        match &sample.outcome {
            Outcome::Transport(kind) => {
                inner.counts.transport_errors += 1;
                *inner.transport_errors.entry(kind.as_str().into()).or_default() += 1;
                error = true;
                status_key = None;
            }
            Outcome::Response { code, executor, body } => {
                inner.counts.responses += 1;
                *inner.by_http_code.entry(code.to_string()).or_default() += 1;
                if let Some(name) = executor {
                    *inner.executors.entry(name.clone()).or_default() += 1;
                }
                let key = match body {
                    Body::Execution(r) => {
                        if let Some(hit) = &r.limit {
                            *inner.by_limit.entry(hit.kind.as_str().into()).or_default() += 1;
                        }
                        r.status.as_str().to_owned()
                    }
                    Body::Error(e) => {
                        *inner
                            .by_error_code
                            .entry(e.error.code.as_str().into())
                            .or_default() += 1;
                        format!("http_{code}")
                    }
                    Body::Other => format!("http_{code}"),
                };
                *inner.by_status.entry(key.clone()).or_default() += 1;
                status_key = Some(key);
                match snippet.expect.check(*code, body.execution()) {
                    Verdict::Right => {}
                    Verdict::UnexpectedHttp => error = true,
                    Verdict::Wrong(why) => wrong = Some(why),
                }
            }
        }
        if error {
            inner.counts.errors += 1;
        }
        if let Some(why) = &wrong {
            inner.counts.wrong_results += 1;
            if inner.wrong_examples.len() < WRONG_EXAMPLES {
                inner.wrong_examples.push(WrongExample {
                    snippet: snippet.name.clone(),
                    problem: why.clone(),
                });
            }
        }
        let per = &mut inner.snippets[sample.snippet];
        per.sent += 1;
        per.latency.saturating_record(latency);
        per.errors += u64::from(error);
        per.wrong += u64::from(wrong.is_some());
        if let Some(key) = status_key {
            *per.by_status.entry(key).or_default() += 1;
        }
        let bucket = inner.bucket(sample.finished, self.start);
        bucket.completed += 1;
        bucket.errors += u64::from(error);
        bucket.wrong += u64::from(wrong.is_some());
        bucket.latency.saturating_record(latency);
        drop(guard);
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    /// Figures for the progress line: totals, and rate and percentiles over the last seconds.
    pub fn progress(&self, now: Instant) -> Progress {
        const WINDOW: usize = 3;
        let inner = self.inner.lock().expect("recorder lock");
        let current = now.saturating_duration_since(self.start).as_secs() as usize;
        // The current second is incomplete: use the `WINDOW` seconds before it when they exist.
        let end = current.min(inner.timeline.len());
        let begin = end.saturating_sub(WINDOW);
        let mut recent = histogram(2);
        let mut completed = 0;
        for b in &inner.timeline[begin..end] {
            recent.add(&b.latency).expect("same bounds");
            completed += b.completed;
        }
        let span = (end - begin).max(1) as f64;
        Progress {
            started: self.started.load(Ordering::Relaxed),
            completed: inner.counts.sent,
            errors: inner.counts.errors,
            wrong: inner.counts.wrong_results,
            rate: if end > begin { completed as f64 / span } else { 0.0 },
            p50_ms: quantile_ms(&recent, 0.5),
            p99_ms: quantile_ms(&recent, 0.99),
        }
    }

    /// The report's measured part; `run` fills in the configuration.
    pub fn finish(&self, end: Instant) -> Report {
        let inner = self.inner.lock().expect("recorder lock");
        let end = inner.last_finish.map_or(end, |t| t.max(self.start));
        let elapsed = end.saturating_duration_since(self.start).as_secs_f64();
        let per_sec = |n: u64| if elapsed > 0.0 { n as f64 / elapsed } else { 0.0 };
        let mut counts = inner.counts.clone();
        counts.good = counts.sent - counts.errors - counts.wrong_results;
        let error_rate = if counts.sent > 0 {
            counts.errors as f64 / counts.sent as f64
        } else {
            0.0
        };
        let wrong_rate = if counts.sent > 0 {
            counts.wrong_results as f64 / counts.sent as f64
        } else {
            0.0
        };
        let timeline = inner
            .timeline
            .iter()
            .enumerate()
            .map(|(t, b)| {
                let has = !b.latency.is_empty();
                TimelinePoint {
                    t_s: t as u64,
                    sent: b.sent,
                    offered: b.offered,
                    completed: b.completed,
                    errors: b.errors,
                    wrong: b.wrong,
                    inflight_max: b.inflight_max,
                    p50_ms: has.then(|| quantile_ms(&b.latency, 0.5)),
                    p90_ms: has.then(|| quantile_ms(&b.latency, 0.9)),
                    p99_ms: has.then(|| quantile_ms(&b.latency, 0.99)),
                }
            })
            .collect();
        let snippets = self
            .scenario
            .snippets
            .iter()
            .zip(&inner.snippets)
            .map(|(s, p)| SnippetReport {
                name: s.name.clone(),
                weight: s.weight,
                sent: p.sent,
                errors: p.errors,
                wrong_results: p.wrong,
                by_status: p.by_status.clone(),
                latency_ms: summarize(&p.latency),
            })
            .collect();
        Report {
            elapsed_s: elapsed,
            throughput_rps: per_sec(counts.sent),
            goodput_rps: per_sec(counts.good),
            error_rate,
            wrong_rate,
            latency_ms: summarize(&inner.latency),
            service_time_ms: summarize(&inner.service),
            by_http_code: inner.by_http_code.clone(),
            by_status: inner.by_status.clone(),
            by_error_code: inner.by_error_code.clone(),
            by_limit: inner.by_limit.clone(),
            transport_errors: inner.transport_errors.clone(),
            fairness: crate::report::fairness(&inner.executors),
            executors: inner.executors.clone(),
            counts,
            snippets,
            wrong_examples: inner.wrong_examples.clone(),
            timeline,
            ..Report::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::TransportError;
    use crate::scenario::{Builtin, test_response};
    use runbox_api::{LimitHit, LimitKind, Status};

    #[test]
    fn percentiles_come_from_the_histogram_within_its_precision() {
        let mut h = histogram(3);
        for ms in 1..=1000u64 {
            h.record(ms * 1000).unwrap();
        }
        let s = summarize(&h);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 1e-9;
        assert!(close(s.min_ms, 1.0), "{s:?}");
        assert!(close(s.p50_ms, 500.0), "{s:?}");
        assert!(close(s.p90_ms, 900.0), "{s:?}");
        assert!(close(s.p99_ms, 990.0), "{s:?}");
        assert!(close(s.p999_ms, 999.0), "{s:?}");
        assert!(close(s.max_ms, 1000.0), "{s:?}");
        assert!(close(s.mean_ms, 500.5), "{s:?}");
        assert_eq!(summarize(&histogram(3)), LatencySummary::default());
        assert_eq!(micros(Duration::ZERO), 1);
        assert_eq!(micros(Duration::from_secs(1 << 40)), MAX_MICROS);
    }

    fn ok(stdout: &str, executor: &str) -> Outcome {
        Outcome::Response {
            code: 200,
            executor: Some(executor.into()),
            body: Body::Execution(Box::new(test_response(Status::Ok, stdout, executor))),
        }
    }

    #[test]
    fn counts_add_up_and_latency_starts_at_the_intended_time() {
        let start = Instant::now();
        let rec = Recorder::new(Scenario::builtin(Builtin::Hello), start);
        let at = |ms: u64| start + Duration::from_millis(ms);
        let outcomes = [
            ok("hi\n", "a"),
            ok("hi\n", "b"),
            ok("bye\n", "a"),
            Outcome::Response {
                code: 429,
                executor: None,
                body: Body::Error(
                    runbox_api::ApiError::new(runbox_api::ErrorCode::Overloaded, "busy").body(),
                ),
            },
            Outcome::Transport(TransportError::Connect),
        ];
        for (i, outcome) in outcomes.into_iter().enumerate() {
            let i = i as u64;
            rec.on_send(at(100 * i + 50), at(100 * i));
            rec.record(Sample {
                snippet: 0,
                intended: at(100 * i),
                sent: at(100 * i + 50),
                finished: at(100 * i + 60),
                outcome,
            });
        }
        let r = rec.finish(Instant::now());
        let c = &r.counts;
        assert_eq!((c.sent, c.responses, c.transport_errors), (5, 4, 1));
        assert_eq!((c.errors, c.wrong_results, c.good), (2, 1, 2));
        assert_eq!(c.sent, r.by_http_code.values().sum::<u64>() + c.transport_errors);
        assert_eq!(c.sent, r.by_status.values().sum::<u64>() + c.transport_errors);
        assert_eq!(r.by_status["ok"], 3);
        assert_eq!(r.by_status["http_429"], 1);
        assert_eq!(r.by_error_code["overloaded"], 1);
        assert_eq!(r.transport_errors["connect"], 1);
        assert_eq!(r.executors["a"], 2);
        assert_eq!(r.fairness, Some(2.0));
        assert!((r.latency_ms.max_ms - 60.0).abs() < 0.1, "{:?}", r.latency_ms);
        assert!(
            (r.service_time_ms.max_ms - 10.0).abs() < 0.1,
            "{:?}",
            r.service_time_ms
        );
        assert_eq!(r.wrong_examples.len(), 1);
        assert!(r.wrong_examples[0].problem.contains("bye"));
        assert!((r.elapsed_s - 0.46).abs() < 1e-6, "{}", r.elapsed_s);
        assert_eq!(r.timeline.len(), 1);
        assert_eq!(r.timeline[0].completed, 5);
        assert_eq!(r.timeline[0].offered, 5);
        assert_eq!(r.snippets[0].sent, 5);
        assert_eq!(r.snippets[0].wrong_results, 1);
    }

    #[test]
    fn statuses_and_limits_come_from_the_typed_result() {
        let start = Instant::now();
        let scenario = Scenario::builtin(Builtin::Mixed).named();
        let index = |name: &str| scenario.snippets.iter().position(|s| s.name == name).unwrap();
        let (hello, timeout, flood) = (index("hello"), index("timeout"), index("output-flood"));
        let rec = Recorder::new(scenario, start);
        let limits = runbox_api::Limits {
            timeout: Duration::from_millis(300),
            fuel: 1,
            memory_bytes: 1,
            output_bytes: 1024,
            files: Default::default(),
        };
        let mut timed_out = test_response(Status::Timeout, "", "e");
        timed_out.limit = Some(LimitHit::new(LimitKind::Timeout, &limits));
        let mut cut = test_response(Status::Ok, &"x".repeat(1024), "e");
        cut.truncated.stdout = true;
        cut.limit = Some(LimitHit::new(LimitKind::Output, &limits));
        for (snippet, r) in [
            (hello, test_response(Status::Ok, "hi\n", "e")),
            (timeout, timed_out),
            (flood, cut),
        ] {
            rec.on_send(start, start);
            rec.record(Sample {
                snippet,
                intended: start,
                sent: start,
                finished: start + Duration::from_millis(1),
                outcome: Outcome::Response {
                    code: 200,
                    executor: Some("e".into()),
                    body: Body::Execution(Box::new(r)),
                },
            });
        }
        let r = rec.finish(Instant::now());
        assert_eq!(r.counts.good, 3, "{:?}", r.wrong_examples);
        assert_eq!(r.by_status["ok"], 2);
        assert_eq!(r.by_status["timeout"], 1);
        assert_eq!(r.by_limit["timeout"], 1);
        assert_eq!(r.by_limit["output"], 1);
        assert_eq!(r.by_limit.len(), 2);
        assert!(r.render().contains("limits       output: 1"), "{}", r.render());
    }
}
