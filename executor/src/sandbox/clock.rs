//! Coarse clocks for the guest: wall and monotonic time rounded down to a
//! resolution (`EXECUTOR_CLOCK_RESOLUTION_US`), so a snippet cannot time its
//! neighbours' cache and memory traffic to the nanosecond.
//!
//! Rounding down keeps the monotonic clock monotonic (a non-decreasing time
//! rounded down stays non-decreasing) and never reports a time that has not
//! come yet. A coarse clock does not close timing channels, it only makes
//! them slower to read: a guest can still count loop iterations between two
//! ticks. Each store gets its own monotonic clock starting at zero, so the
//! host's uptime is not visible either.

use std::time::{Duration, Instant, SystemTime};

use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// The default resolution of the guest's clocks.
pub const DEFAULT_RESOLUTION: Duration = Duration::from_micros(100);

/// `nanos` rounded down to a multiple of `resolution` (nanoseconds, ≥ 1).
fn floor(nanos: u128, resolution: u128) -> u128 {
    nanos - nanos % resolution.max(1)
}

/// The resolution in whole nanoseconds, at least one.
fn nanos_of(resolution: Duration) -> u64 {
    u64::try_from(resolution.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// Unix time rounded down to the resolution.
#[derive(Debug, Clone, Copy)]
pub struct CoarseWallClock {
    resolution: u64,
}

impl CoarseWallClock {
    pub fn new(resolution: Duration) -> Self {
        Self {
            resolution: nanos_of(resolution),
        }
    }
}

impl HostWallClock for CoarseWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(self.resolution)
    }

    fn now(&self) -> Duration {
        // WASI's wall clock is Unix time; a host clock before 1970 reads as 0.
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let nanos = floor(since_epoch.as_nanos(), u128::from(self.resolution));
        Duration::new(
            u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX),
            u32::try_from(nanos % 1_000_000_000).unwrap_or(0),
        )
    }
}

/// Nanoseconds since the clock was made, rounded down to the resolution.
#[derive(Debug, Clone, Copy)]
pub struct CoarseMonotonicClock {
    start: Instant,
    resolution: u64,
}

impl CoarseMonotonicClock {
    pub fn new(resolution: Duration) -> Self {
        Self {
            start: Instant::now(),
            resolution: nanos_of(resolution),
        }
    }
}

impl HostMonotonicClock for CoarseMonotonicClock {
    fn resolution(&self) -> u64 {
        self.resolution
    }

    fn now(&self) -> u64 {
        let nanos = floor(self.start.elapsed().as_nanos(), u128::from(self.resolution));
        // u64 nanoseconds last 584 years.
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rounded_down_to_the_resolution() {
        assert_eq!(floor(1_234_567, 100_000), 1_200_000);
        assert_eq!(floor(1_200_000, 100_000), 1_200_000);
        assert_eq!(floor(99_999, 100_000), 0);
        assert_eq!(floor(7, 1), 7);
        assert_eq!(floor(7, 0), 7, "a zero resolution is read as 1 ns");
    }

    #[test]
    fn the_flag_defaults_to_the_default_and_refuses_zero() {
        use clap::Parser;
        let c = crate::config::Config::try_parse_from(["executor"]).unwrap();
        assert_eq!(
            Duration::from_micros(c.runtime.clock_resolution_us),
            DEFAULT_RESOLUTION
        );
        assert!(crate::config::Config::try_parse_from(["executor", "--clock-resolution-us", "0"]).is_err());
    }

    #[test]
    fn clocks_read_multiples_of_the_resolution_and_never_go_back() {
        let res = Duration::from_micros(100);
        let mono = CoarseMonotonicClock::new(res);
        let wall = CoarseWallClock::new(res);
        assert_eq!(mono.resolution(), 100_000);
        assert_eq!(wall.resolution(), res);
        let mut last = 0;
        for _ in 0..10_000 {
            let now = mono.now();
            assert_eq!(now % 100_000, 0);
            assert!(now >= last, "{now} < {last}");
            last = now;
            assert_eq!(wall.now().subsec_nanos() % 100_000, 0);
        }
    }
}
