//! The two ways of driving load: closed loop (N workers back to back) and open loop (a constant or
//! ramping arrival rate, latency from the intended send time), both bounded and stoppable.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Uri;
use tokio::sync::{Semaphore, watch};

use crate::client::{self, HttpClient, Outcome, TransportError};
use crate::progress::Ticker;
use crate::report::{Report, RunSettings, SCHEMA};
use crate::scenario::{Picker, Rng, Scenario};
use crate::stats::{Recorder, Sample};
use crate::watch::Watcher;

/// An arrival rate over time: `from` req/s rising (or falling) linearly to `to` over `over`
/// seconds, then `to`. A constant rate has `from == to`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub from: f64,
    pub to: f64,
    pub over: f64,
}

impl Schedule {
    pub fn constant(rate: f64) -> Schedule {
        Schedule {
            from: rate,
            to: rate,
            over: 0.0,
        }
    }

    /// The rate at `t` seconds.
    pub fn rate_at(&self, t: f64) -> f64 {
        if t >= self.over {
            self.to
        } else {
            self.from + (self.to - self.from) * t / self.over
        }
    }

    /// How many requests the schedule sends in `[0, t)` (fractional).
    pub fn count_until(&self, t: f64) -> f64 {
        let ramp = t.min(self.over);
        let during = ramp * (self.from + self.rate_at(ramp)) / 2.0;
        during + (t - ramp).max(0.0) * self.to
    }

    /// When the `k`-th request (from 0) is due, in seconds from the start: the `t` where
    /// `count_until(t) = k`. `None` if it never is (the rate falls to 0).
    pub fn time_of(&self, k: u64) -> Option<f64> {
        let k = k as f64;
        let in_ramp = self.count_until(self.over);
        if self.over > 0.0 && k < in_ramp {
            let (a, b) = (self.from, self.to);
            if (b - a).abs() < f64::EPSILON {
                return Some(k / a);
            }
            // a·t + (b−a)/(2T)·t² = k
            let c = (b - a) / (2.0 * self.over);
            let disc = (a * a + 4.0 * c * k).max(0.0);
            return Some((disc.sqrt() - a) / (2.0 * c));
        }
        (self.to > 0.0).then(|| self.over + (k - in_ramp) / self.to)
    }
}

/// How load is driven.
#[derive(Debug, Clone)]
pub enum Mode {
    /// `workers` tasks, each with one connection, sending back to back.
    Closed {
        workers: u64,
        requests_per_worker: Option<u64>,
        duration: Option<Duration>,
    },
    /// Requests at scheduled instants, whether or not earlier ones have answered.
    Open {
        schedule: Schedule,
        requests: Option<u64>,
        duration: Option<Duration>,
        max_inflight: u32,
    },
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The base URL as given (reported).
    pub target: String,
    pub execute: Uri,
    pub mode: Mode,
    pub scenario: Scenario,
    pub timeout: Duration,
    pub warmup: u64,
    pub seed: u64,
    pub label: String,
    pub progress: bool,
    /// `/metrics` pages to scrape during the run.
    pub watch: Vec<Uri>,
    pub watch_interval: Duration,
}

/// The stop signals a run obeys: `stop` ends sending (in-flight requests finish), `cancel` also
/// abandons in-flight requests (counted as `cancelled`).
#[derive(Debug, Clone)]
pub struct Stop {
    stop: watch::Receiver<bool>,
    cancel: watch::Receiver<bool>,
}

#[derive(Debug)]
pub struct StopHandle {
    stop: watch::Sender<bool>,
    cancel: watch::Sender<bool>,
}

pub fn stop_pair() -> (StopHandle, Stop) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    (
        StopHandle {
            stop: stop_tx,
            cancel: cancel_tx,
        },
        Stop {
            stop: stop_rx,
            cancel: cancel_rx,
        },
    )
}

impl StopHandle {
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    pub fn cancel(&self) {
        self.stop.send_replace(true);
        self.cancel.send_replace(true);
    }
}

impl Stop {
    pub fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    pub async fn stopped(&mut self) {
        let _ = self.stop.wait_for(|s| *s).await;
    }

    pub async fn cancelled(&mut self) {
        let _ = self.cancel.wait_for(|s| *s).await;
    }
}

/// One request: sends, waits (unless cancelled), records.
async fn one(
    recorder: &Recorder,
    client: &HttpClient,
    uri: &Uri,
    (snippet, body): (usize, Bytes),
    intended: Instant,
    timeout: Duration,
    stop: &mut Stop,
) {
    let sent = Instant::now();
    recorder.on_send(sent, intended);
    let outcome = tokio::select! {
        outcome = client::execute(client, uri, body, timeout) => outcome,
        () = stop.cancelled() => Outcome::Transport(TransportError::Cancelled),
    };
    recorder.record(Sample {
        snippet,
        intended,
        sent,
        finished: Instant::now(),
        outcome,
    });
}

/// Runs the load and returns the report (thresholds not yet checked).
pub async fn run(config: RunConfig, stop: Stop) -> Report {
    let bodies: Arc<[Bytes]> = config.scenario.snippets.iter().map(|s| s.body()).collect();
    let picker = Picker::new(config.scenario.snippets.iter().map(|s| s.weight));
    warm_up(&config, &bodies, &picker, &stop).await;

    let started_at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let start = Instant::now();
    let recorder = Arc::new(Recorder::new(config.scenario.clone(), start));
    let watcher = Watcher::start(config.watch.clone(), config.watch_interval, start);
    let ticker = Ticker::start(
        Arc::clone(&recorder),
        expected_total(&config.mode),
        config.progress,
    );

    match &config.mode {
        Mode::Closed {
            workers,
            requests_per_worker,
            duration,
        } => {
            let deadline = duration.map(|d| start + d);
            let tasks: Vec<_> = (0..*workers)
                .map(|w| {
                    let (recorder, bodies, picker) =
                        (Arc::clone(&recorder), Arc::clone(&bodies), picker.clone());
                    let (uri, timeout, mut stop) = (config.execute.clone(), config.timeout, stop.clone());
                    let limit = requests_per_worker.unwrap_or(u64::MAX);
                    let mut rng = Rng::new(config.seed ^ w.wrapping_mul(0x9E37_79B9));
                    tokio::spawn(async move {
                        let client = client::new_client(1);
                        for _ in 0..limit {
                            if stop.is_stopped() || deadline.is_some_and(|d| Instant::now() >= d) {
                                break;
                            }
                            let i = picker.pick(&mut rng);
                            let now = Instant::now();
                            let job = (i, bodies[i].clone());
                            one(&recorder, &client, &uri, job, now, timeout, &mut stop).await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                let _ = t.await;
            }
        }
        Mode::Open {
            schedule,
            requests,
            duration,
            max_inflight,
        } => {
            let client = client::new_client(usize::MAX);
            let slots = Arc::new(Semaphore::new(*max_inflight as usize));
            let mut rng = Rng::new(config.seed);
            let mut stop_wait = stop.clone();
            let mut k = 0u64;
            loop {
                if requests.is_some_and(|n| k >= n) {
                    break;
                }
                let Some(t) = schedule.time_of(k) else { break };
                if duration.is_some_and(|d| t >= d.as_secs_f64()) {
                    break;
                }
                let intended = start + Duration::from_secs_f64(t);
                tokio::select! {
                    () = tokio::time::sleep_until(intended.into()) => {}
                    () = stop_wait.stopped() => break,
                }
                let permit = tokio::select! {
                    p = Arc::clone(&slots).acquire_owned() => p.expect("never closed"),
                    () = stop_wait.stopped() => break,
                };
                let i = picker.pick(&mut rng);
                let job = (i, bodies[i].clone());
                let (recorder, client, uri) = (Arc::clone(&recorder), client.clone(), config.execute.clone());
                let (timeout, mut stop) = (config.timeout, stop.clone());
                tokio::spawn(async move {
                    one(&recorder, &client, &uri, job, intended, timeout, &mut stop).await;
                    drop(permit);
                });
                k += 1;
            }
            // Every slot free again: every request has finished.
            let _ = slots.acquire_many(*max_inflight).await;
        }
    }

    let end = Instant::now();
    ticker.finish();
    let metrics = watcher.finish().await;
    let mut report = recorder.finish(end);
    report.schema = SCHEMA.into();
    report.label = config.label.clone();
    report.target = config.target.clone();
    report.scenario = config.scenario.name.clone();
    report.settings = settings(&config);
    report.started_at_unix_ms = started_at_unix_ms;
    report.interrupted = stop.is_stopped();
    report.latency_basis = match config.mode {
        Mode::Closed { .. } => "send",
        Mode::Open { .. } => "intended_send",
    }
    .into();
    report.metrics = metrics;
    report
}

/// Sequential requests before the measured run (results ignored).
async fn warm_up(config: &RunConfig, bodies: &[Bytes], picker: &Picker, stop: &Stop) {
    if config.warmup == 0 {
        return;
    }
    let client = client::new_client(1);
    let mut rng = Rng::new(config.seed.wrapping_add(1));
    let mut stop = stop.clone();
    for _ in 0..config.warmup {
        let i = picker.pick(&mut rng);
        tokio::select! {
            _ = client::execute(&client, &config.execute, bodies[i].clone(), config.timeout) => {}
            () = stop.stopped() => return,
        }
    }
}

/// How many requests the run will send, when known in advance.
pub fn expected_total(mode: &Mode) -> Option<u64> {
    match mode {
        Mode::Closed {
            workers,
            requests_per_worker: Some(n),
            duration: None,
        } => Some(workers * n),
        Mode::Closed { .. } => None,
        Mode::Open {
            schedule,
            requests,
            duration,
            ..
        } => {
            let by_time = duration.map(|d| schedule.count_until(d.as_secs_f64()).ceil() as u64);
            match (requests, by_time) {
                (Some(n), Some(m)) => Some((*n).min(m)),
                (Some(n), None) => Some(*n),
                (None, m) => m,
            }
        }
    }
}

fn settings(config: &RunConfig) -> RunSettings {
    let mut s = RunSettings {
        timeout_ms: config.timeout.as_millis() as u64,
        warmup: config.warmup,
        seed: config.seed,
        ..RunSettings::default()
    };
    match &config.mode {
        Mode::Closed {
            workers,
            requests_per_worker,
            duration,
        } => {
            s.mode = "closed".into();
            s.workers = Some(*workers);
            s.requests = *requests_per_worker;
            s.duration_s = duration.map(|d| d.as_secs_f64());
        }
        Mode::Open {
            schedule,
            requests,
            duration,
            max_inflight,
        } => {
            s.mode = "open".into();
            s.requests = *requests;
            s.duration_s = duration.map(|d| d.as_secs_f64());
            s.rate_rps = Some(schedule.to);
            if schedule.over > 0.0 {
                s.ramp_from_rps = Some(schedule.from);
                s.ramp_over_s = Some(schedule.over);
            }
            s.max_inflight = Some(u64::from(*max_inflight));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sends_before(s: &Schedule, t: f64) -> u64 {
        (0..).take_while(|&k| s.time_of(k).is_some_and(|x| x < t)).count() as u64
    }

    #[test]
    fn a_constant_rate_sends_rate_times_duration() {
        let s = Schedule::constant(25.0);
        assert_eq!(s.time_of(0), Some(0.0));
        assert_eq!(s.time_of(25), Some(1.0));
        assert_eq!(sends_before(&s, 2.0), 50);
        assert_eq!(s.count_until(2.0), 50.0);
        assert_eq!(Schedule::constant(0.0).time_of(0), None);
    }

    #[test]
    fn a_ramp_integrates_the_rate() {
        // 10 → 500 req/s over 120 s: 30 600 requests during the ramp, then 500/s.
        let s = Schedule {
            from: 10.0,
            to: 500.0,
            over: 120.0,
        };
        assert!((s.count_until(120.0) - 30_600.0).abs() < 1e-6);
        assert!((s.count_until(130.0) - 35_600.0).abs() < 1e-6);
        assert_eq!(s.rate_at(60.0), 255.0);
        for k in [0u64, 1, 10, 1000, 30_599, 30_600, 35_000] {
            let t = s.time_of(k).unwrap();
            assert!((s.count_until(t) - k as f64).abs() < 1e-6, "k {k} t {t}");
        }
        // count_until(1) = 10 + 490/240 ≈ 12.04: requests 0..=12 are due in the first second.
        assert_eq!(sends_before(&s, 1.0), 13);
        let down = Schedule {
            from: 100.0,
            to: 0.0,
            over: 2.0,
        };
        assert_eq!(sends_before(&down, 10.0), 100);
        assert_eq!(down.time_of(100), None);
        let from_zero = Schedule {
            from: 0.0,
            to: 10.0,
            over: 2.0,
        };
        assert_eq!(from_zero.time_of(0), Some(0.0));
        assert_eq!(sends_before(&from_zero, 2.0), 10);
    }

    #[test]
    fn totals_are_known_when_bounded_by_count() {
        let closed = Mode::Closed {
            workers: 4,
            requests_per_worker: Some(25),
            duration: None,
        };
        assert_eq!(expected_total(&closed), Some(100));
        let open = Mode::Open {
            schedule: Schedule::constant(20.0),
            requests: None,
            duration: Some(Duration::from_secs(3)),
            max_inflight: 10,
        };
        assert_eq!(expected_total(&open), Some(60));
    }

    #[tokio::test]
    async fn stop_and_cancel_signal_every_clone() {
        let (handle, stop) = stop_pair();
        let mut a = stop.clone();
        assert!(!a.is_stopped());
        handle.stop();
        a.stopped().await;
        assert!(stop.is_stopped());
        handle.cancel();
        a.cancelled().await;
    }
}
