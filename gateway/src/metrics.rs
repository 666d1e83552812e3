//! The gateway's Prometheus metrics, registered per [`Metrics`] value, and
//! [`observe`], the layer that counts and times every API request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use metrics::{Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

pub const REQUESTS_TOTAL: &str = "gateway_requests_total";
pub const REQUEST_DURATION_SECONDS: &str = "gateway_request_duration_seconds";
pub const UPSTREAM_DURATION_SECONDS: &str = "gateway_upstream_duration_seconds";
pub const BACKENDS: &str = "gateway_backends";
pub const RETRIES_TOTAL: &str = "gateway_retries_total";
pub const INFLIGHT_REQUESTS: &str = "gateway_inflight_requests";
pub const PENDING_REQUESTS: &str = "gateway_pending_requests";
pub const CLIENT_REFUSALS_TOTAL: &str = "gateway_client_refusals_total";

/// Which per-client limit refused a request (the `limit` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientLimit {
    /// The requests/s token bucket.
    Requests,
    /// The cap on runs in flight.
    InFlight,
    /// The execution-time budget.
    Budget,
}

impl ClientLimit {
    pub const ALL: [ClientLimit; 3] = [ClientLimit::Requests, ClientLimit::InFlight, ClientLimit::Budget];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientLimit::Requests => "requests",
            ClientLimit::InFlight => "inflight",
            ClientLimit::Budget => "budget",
        }
    }
}

const BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    _recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    request_duration: Histogram,
    upstream_duration: Histogram,
    ready_backends: Gauge,
    unready_backends: Gauge,
    retries: Counter,
    inflight: Gauge,
    pending: Gauge,
    /// By [`ClientLimit`], in `ClientLimit::ALL` order.
    client_refusals: [Counter; 3],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), &BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        let (request_duration, upstream_duration, ready_backends, unready_backends, retries, inflight) =
            metrics::with_local_recorder(&recorder, || {
                metrics::describe_counter!(
                    REQUESTS_TOTAL,
                    "Requests answered by the gateway, by HTTP status code."
                );
                metrics::describe_histogram!(
                    REQUEST_DURATION_SECONDS,
                    Unit::Seconds,
                    "Time from receiving a request to answering it."
                );
                metrics::describe_histogram!(
                    UPSTREAM_DURATION_SECONDS,
                    Unit::Seconds,
                    "Time one executor took to answer one forwarded request."
                );
                metrics::describe_gauge!(
                    BACKENDS,
                    "Executors known to the gateway, by state (ready, unready)."
                );
                metrics::describe_counter!(
                    RETRIES_TOTAL,
                    "Attempts retried on another executor (after a connect failure or a 429)."
                );
                metrics::describe_gauge!(INFLIGHT_REQUESTS, "Requests in flight through the gateway.");
                (
                    metrics::histogram!(REQUEST_DURATION_SECONDS),
                    metrics::histogram!(UPSTREAM_DURATION_SECONDS),
                    metrics::gauge!(BACKENDS, "state" => "ready"),
                    metrics::gauge!(BACKENDS, "state" => "unready"),
                    metrics::counter!(RETRIES_TOTAL),
                    metrics::gauge!(INFLIGHT_REQUESTS),
                )
            });
        let pending = metrics::with_local_recorder(&recorder, || {
            metrics::describe_gauge!(
                PENDING_REQUESTS,
                "Requests the gateway holds that are on no executor now: past the door and in the \
                 forwarder, before the first attempt is sent or between a failed or busy (429) attempt \
                 and the retry. Backlog that never reached an executor."
            );
            metrics::gauge!(PENDING_REQUESTS)
        });
        let client_refusals = metrics::with_local_recorder(&recorder, || {
            metrics::describe_counter!(
                CLIENT_REFUSALS_TOTAL,
                "Requests refused by a per-client limit (requests, inflight, budget)."
            );
            ClientLimit::ALL.map(|l| metrics::counter!(CLIENT_REFUSALS_TOTAL, "limit" => l.as_str()))
        });
        Metrics {
            inner: Arc::new(Inner {
                _recorder: recorder,
                handle,
                request_duration,
                upstream_duration,
                ready_backends,
                unready_backends,
                retries,
                inflight,
                pending,
                client_refusals,
            }),
        }
    }

    pub fn render(&self) -> String {
        self.inner.handle.run_upkeep();
        self.inner.handle.render()
    }

    /// Counts a request in flight until the returned guard drops, however
    /// the request ends (answered, or its future dropped when the client went
    /// away).
    pub fn begin_request(&self) -> InflightRequest {
        self.inner.inflight.increment(1.0);
        InflightRequest {
            metrics: self.clone(),
            started: Instant::now(),
        }
    }

    /// Counts a request in `gateway_pending_requests` (the forwarder holds
    /// it, on no executor) until the guard drops or is [`Pending::sent`].
    pub fn begin_pending(&self) -> Pending {
        self.inner.pending.increment(1.0);
        Pending {
            metrics: self.clone(),
            counted: true,
        }
    }

    pub fn upstream(&self, duration: Duration) {
        self.inner.upstream_duration.record(duration.as_secs_f64());
    }

    pub fn backends(&self, ready: usize, unready: usize) {
        self.inner.ready_backends.set(ready as f64);
        self.inner.unready_backends.set(unready as f64);
    }

    pub fn retry(&self) {
        self.inner.retries.increment(1);
    }

    /// A request refused by the per-client `limit`.
    pub fn client_refused(&self, limit: ClientLimit) {
        self.inner.client_refusals[limit as usize].increment(1);
    }
}

/// One request in `gateway_inflight_requests`: incremented on creation,
/// decremented on drop.
#[derive(Debug)]
pub struct InflightRequest {
    metrics: Metrics,
    started: Instant,
}

impl InflightRequest {
    /// Records the answer: `gateway_requests_total{code}` and the duration.
    pub fn answered(&self, status: u16) {
        let inner = &self.metrics.inner;
        metrics::with_local_recorder(&inner._recorder, || {
            metrics::counter!(REQUESTS_TOTAL, "code" => status.to_string()).increment(1);
        });
        inner
            .request_duration
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for InflightRequest {
    fn drop(&mut self) {
        self.metrics.inner.inflight.decrement(1.0);
    }
}

/// A request in the forwarder, in `gateway_pending_requests` while it is on
/// no executor. Dropping it (the request answered, or its future dropped when
/// the client went away) takes it out whatever state it is in.
#[derive(Debug)]
pub struct Pending {
    metrics: Metrics,
    counted: bool,
}

impl Pending {
    /// An attempt is on its way to an executor: not pending while it lasts.
    pub fn sent(&mut self) {
        if std::mem::replace(&mut self.counted, false) {
            self.metrics.inner.pending.decrement(1.0);
        }
    }

    /// The attempt ended and the request is held again (to be retried).
    pub fn held(&mut self) {
        if !std::mem::replace(&mut self.counted, true) {
            self.metrics.inner.pending.increment(1.0);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.sent();
    }
}

/// The layer around the API routes: the request is in flight from here
/// until its response leaves (or its future is dropped), and is counted by
/// status code.
pub async fn observe(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let inflight = metrics.begin_request();
    let response = next.run(request).await;
    inflight.answered(response.status().as_u16());
    response
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }

    #[test]
    fn the_inflight_gauge_follows_the_guards_and_answers_are_counted() {
        let m = Metrics::new();
        let a = m.begin_request();
        let b = m.begin_request();
        assert_eq!(value(&m.render(), INFLIGHT_REQUESTS), Some(2.0));
        a.answered(200);
        drop(a);
        drop(b); // never answered: the client went away
        let text = m.render();
        assert_eq!(value(&text, INFLIGHT_REQUESTS), Some(0.0), "{text}");
        assert_eq!(
            value(&text, "gateway_requests_total{code=\"200\"}"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(&text, "gateway_request_duration_seconds_count"),
            Some(1.0),
            "{text}"
        );
    }

    #[test]
    fn the_pending_gauge_follows_its_guards_in_every_state() {
        let m = Metrics::new();
        let pending = || value(&m.render(), PENDING_REQUESTS);
        let mut a = m.begin_pending();
        let b = m.begin_pending();
        assert_eq!(pending(), Some(2.0));
        a.sent();
        a.sent();
        assert_eq!(
            pending(),
            Some(1.0),
            "a is on an executor; sent twice counts once"
        );
        a.held();
        a.held();
        assert_eq!(pending(), Some(2.0), "a waits for its retry");
        a.sent();
        drop(a); // answered while on an executor
        drop(b); // dropped while held (the client went away)
        assert_eq!(pending(), Some(0.0));
    }

    #[test]
    fn every_metric_has_help() {
        let m = Metrics::new();
        let _r = m.begin_request();
        let _p = m.begin_pending();
        m.backends(1, 0);
        m.retry();
        m.upstream(Duration::from_millis(1));
        m.client_refused(ClientLimit::Budget);
        let text = m.render();
        assert_eq!(
            value(&text, "gateway_client_refusals_total{limit=\"budget\"}"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(&text, "gateway_client_refusals_total{limit=\"inflight\"}"),
            Some(0.0),
            "every limit's series exists from the start: {text}"
        );
        for name in [
            REQUEST_DURATION_SECONDS,
            UPSTREAM_DURATION_SECONDS,
            BACKENDS,
            RETRIES_TOTAL,
            INFLIGHT_REQUESTS,
            PENDING_REQUESTS,
            CLIENT_REFUSALS_TOTAL,
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}: {text}");
        }
    }
}
