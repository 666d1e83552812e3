//! The per-run budgets (fuel, memory, wall clock, output) and the host-side
//! pieces that enforce them inside a wasmtime store.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The budgets one execution runs under, after defaults and clamping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline for the whole run, including time blocked in the host.
    pub timeout: Duration,
    /// Deterministic CPU budget: wasmtime fuel units (about one per wasm operator).
    pub fuel: u64,
    /// Cap on the guest's linear memory, in bytes.
    pub memory_bytes: u64,
    /// Cap on each of stdout and stderr, in bytes; the excess is dropped.
    pub output_bytes: u64,
}

/// Limits as a client may ask for them: each one optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitRequest {
    pub timeout_ms: Option<u64>,
    pub fuel: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub output_bytes: Option<u64>,
}

/// Server-side defaults and maxima for [`Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitPolicy {
    pub default: Limits,
    pub max: Limits,
}

/// A requested limit is unusable (zero).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("limit `{0}` must be greater than zero")]
pub struct InvalidLimit(pub &'static str);

impl LimitPolicy {
    /// Fills in defaults and clamps each requested value to the server maximum.
    pub fn resolve(&self, req: &LimitRequest) -> Result<Limits, InvalidLimit> {
        fn pick(name: &'static str, asked: Option<u64>, default: u64, max: u64) -> Result<u64, InvalidLimit> {
            match asked {
                Some(0) => Err(InvalidLimit(name)),
                Some(v) => Ok(v.min(max)),
                None => Ok(default.min(max)),
            }
        }
        let (d, m) = (&self.default, &self.max);
        let timeout_ms = pick("timeout_ms", req.timeout_ms, millis(d.timeout), millis(m.timeout))?;
        Ok(Limits {
            timeout: Duration::from_millis(timeout_ms),
            fuel: pick("fuel", req.fuel, d.fuel, m.fuel)?,
            memory_bytes: pick("memory_bytes", req.memory_bytes, d.memory_bytes, m.memory_bytes)?,
            output_bytes: pick("output_bytes", req.output_bytes, d.output_bytes, m.output_bytes)?,
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Caps linear memory and tables, and remembers whether it ever said no.
///
/// Growth beyond the cap fails inside the guest (CPython raises `MemoryError`)
/// instead of trapping, so the snippet's own traceback survives; the recorded
/// denial is how the sandbox tells `memory_exceeded` apart from other errors.
#[derive(Debug)]
pub struct MemoryLimiter {
    memory_bytes: usize,
    table_elements: usize,
    denied: bool,
}

/// Table elements any one table may hold; CPython's guest uses a few thousand.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryLimiter {
    pub fn new(memory_bytes: u64) -> Self {
        Self {
            memory_bytes: usize::try_from(memory_bytes).unwrap_or(usize::MAX),
            table_elements: MAX_TABLE_ELEMENTS,
            denied: false,
        }
    }

    /// True once a memory or table growth was refused.
    pub fn denied(&self) -> bool {
        self.denied
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.memory_bytes;
        self.denied |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.table_elements;
        self.denied |= !ok;
        Ok(ok)
    }

    fn instances(&self) -> usize {
        // A componentize-py component instantiates a handful of core modules.
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

/// An in-memory stdout/stderr that keeps the first `cap` bytes and drops the
/// rest, recording that it did. Writes never fail, so a flooding guest is
/// stopped by its fuel or deadline, not by an I/O error it could catch.
#[derive(Debug, Clone)]
pub struct CappedOutput {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
}

/// How much the guest may write per `check-write` permit.
const WRITE_PERMIT: usize = 64 * 1024;

impl CappedOutput {
    pub fn new(cap: u64) -> Self {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        Self {
            inner: Arc::new(Mutex::new(Captured {
                cap,
                ..Captured::default()
            })),
        }
    }

    fn push(&self, data: &[u8]) {
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let room = c.cap.saturating_sub(c.bytes.len());
        let keep = data.len().min(room);
        c.bytes.extend_from_slice(&data[..keep]);
        c.truncated |= keep < data.len();
    }

    /// The bytes kept and whether anything was dropped.
    pub fn take(&self) -> (Vec<u8>, bool) {
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (std::mem::take(&mut c.bytes), c.truncated)
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl tokio::io::AsyncWrite for CappedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LimitPolicy {
        let l = |t, f, m, o| Limits {
            timeout: Duration::from_millis(t),
            fuel: f,
            memory_bytes: m,
            output_bytes: o,
        };
        LimitPolicy {
            default: l(1000, 100, 1 << 20, 10),
            max: l(5000, 1000, 1 << 24, 100),
        }
    }

    #[test]
    fn defaults_fill_missing_fields() {
        assert_eq!(
            policy().resolve(&LimitRequest::default()).unwrap(),
            policy().default
        );
    }

    #[test]
    fn requests_are_clamped_to_the_maximum() {
        let req = LimitRequest {
            timeout_ms: Some(60_000),
            fuel: Some(50),
            memory_bytes: Some(u64::MAX),
            output_bytes: Some(101),
        };
        let got = policy().resolve(&req).unwrap();
        assert_eq!(got.timeout, Duration::from_secs(5));
        assert_eq!(got.fuel, 50);
        assert_eq!(got.memory_bytes, 1 << 24);
        assert_eq!(got.output_bytes, 100);
    }

    #[test]
    fn zero_is_rejected_by_name() {
        let req = LimitRequest {
            fuel: Some(0),
            ..LimitRequest::default()
        };
        assert_eq!(policy().resolve(&req), Err(InvalidLimit("fuel")));
    }

    #[test]
    fn output_keeps_the_first_bytes_and_flags_the_rest() {
        let out = CappedOutput::new(5);
        out.push(b"hel");
        assert_eq!(out.take(), (b"hel".to_vec(), false));
        out.push(b"hello");
        out.push(b"world");
        assert_eq!(out.take(), (b"hello".to_vec(), true));
    }

    #[test]
    fn limiter_records_a_denied_growth() {
        let mut l = MemoryLimiter::new(1024);
        assert!(l.memory_growing(0, 1024, None).unwrap());
        assert!(!l.denied());
        assert!(!l.memory_growing(1024, 2048, None).unwrap());
        assert!(l.denied());
    }
}
