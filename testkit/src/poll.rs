//! Waiting for a condition by polling it, with a deadline: the way tests order themselves
//! against another process instead of sleeping.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The pause between two probes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Probes until `done` holds for the probed value, for at most `within`: `Ok(value)` as soon as
/// it does, `Err(last value)` when the deadline passes first. The probe runs at least once, and
/// once more at the deadline; each probe must be bounded itself (an HTTP call with a timeout).
pub async fn try_poll_until<T, F, Fut>(
    within: Duration,
    mut probe: F,
    done: impl Fn(&T) -> bool,
) -> Result<T, T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + within;
    loop {
        let value = probe().await;
        if done(&value) {
            return Ok(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(value);
        }
        tokio::time::sleep_until((now + POLL_INTERVAL).min(deadline)).await;
    }
}

/// [`try_poll_until`], panicking on timeout with `what` and the last value probed.
#[track_caller]
pub fn poll_until<T, F, Fut>(
    what: impl Into<String>,
    within: Duration,
    probe: F,
    done: impl Fn(&T) -> bool,
) -> impl Future<Output = T>
where
    T: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let caller = std::panic::Location::caller();
    let what = what.into();
    async move {
        match try_poll_until(within, probe, done).await {
            Ok(value) => value,
            Err(last) => {
                panic!("{caller}: {what}: still not the case after {within:?}; last value: {last:?}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_the_first_value_that_satisfies() {
        let n = AtomicU32::new(0);
        let got = poll_until(
            "n reaches 3",
            Duration::from_secs(1),
            || async { n.fetch_add(1, Ordering::Relaxed) + 1 },
            |v| *v >= 3,
        )
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_the_last_value_at_the_deadline() {
        let n = AtomicU32::new(0);
        let start = Instant::now();
        let got = try_poll_until(
            Duration::from_millis(100),
            || async { n.fetch_add(1, Ordering::Relaxed) },
            |_| false,
        )
        .await;
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        // Probes at 0, 20, …, 100 ms.
        assert_eq!(got, Err(5));
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "the gauge is 0: still not the case after 50ms; last value: 7")]
    async fn panics_with_what_and_the_last_value() {
        poll_until(
            "the gauge is 0",
            Duration::from_millis(50),
            || async { 7 },
            |v| *v == 0,
        )
        .await;
    }
}
