//! The wasmtime half of the limits: a store limiter that caps memory and
//! tables, and capped stdout/stderr streams. The policy half (what a run may
//! ask for, defaults and maxima) is `runbox_api::limits`.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

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
/// Also the pooling allocator's table slot size (`sandbox::pool`).
pub const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Core instances, linear memories and tables one run may create. A
/// componentize-py component instantiates a handful of core modules (the
/// load logs what the guest needs); these caps are the store's and the
/// pooling allocator's per-run limits alike.
pub const MAX_CORE_INSTANCES: u32 = 64;
pub const MAX_MEMORIES: u32 = 16;
pub const MAX_TABLES: u32 = 64;

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
        MAX_CORE_INSTANCES as usize
    }

    fn tables(&self) -> usize {
        MAX_TABLES as usize
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES as usize
    }
}

/// An in-memory stdout/stderr that keeps the first `cap` bytes and drops the
/// rest, recording that it did. Writes within a permit never fail, so a
/// flooding guest is stopped by its fuel or deadline, not by an I/O error it
/// could catch.
///
/// The permit `check-write` grants is the room left under the cap plus one
/// byte (at least [`MIN_WRITE_PERMIT`]): a write that fits the cap is taken
/// whole, in one call, so the guest never sees a short write (CPython's
/// unbuffered text streams ignore one, losing the rest), and a write past the
/// cap is taken too and its excess dropped, so `truncated` is set exactly when
/// bytes were lost. A write longer than the permit is a trap, as the WASI
/// contract says; it also bounds what one write lifts into host memory.
#[derive(Debug)]
pub struct CappedOutput {
    inner: Arc<Mutex<Captured>>,
    /// What the last `check-write` granted, less what was written since. Per
    /// stream: each stream resource the guest opens gets its own clone.
    permit: usize,
}

impl Clone for CappedOutput {
    /// The same buffer, with no permit yet.
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            permit: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
}

/// The smallest `check-write` permit, granted once the cap is (nearly)
/// reached: enough that a flood past the cap costs the guest a host call per
/// 4 KiB, not per byte, while the host holds at most this much per write.
pub const MIN_WRITE_PERMIT: usize = 4 << 10;

impl CappedOutput {
    pub fn new(cap: u64) -> Self {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        Self {
            inner: Arc::new(Mutex::new(Captured {
                cap,
                ..Captured::default()
            })),
            permit: 0,
        }
    }

    /// The room left under the cap plus one byte, at least [`MIN_WRITE_PERMIT`].
    fn grant(&self) -> usize {
        let c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let room = c.cap.saturating_sub(c.bytes.len());
        room.saturating_add(1).max(MIN_WRITE_PERMIT)
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
        if bytes.len() > self.permit {
            return Err(StreamError::trap(
                "write longer than the permit check-write granted",
            ));
        }
        self.permit -= bytes.len();
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.permit = self.grant();
        Ok(self.permit)
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
    fn output_at_the_cap_is_not_truncated_and_one_byte_over_is() {
        let out = CappedOutput::new(4);
        out.push(b"abcd");
        assert_eq!(out.take(), (b"abcd".to_vec(), false));
        let out = CappedOutput::new(4);
        out.push(b"abcde");
        assert_eq!(out.take(), (b"abcd".to_vec(), true));
    }

    #[test]
    fn the_permit_covers_the_room_left_and_one_byte_more() {
        let mut out = CappedOutput::new(1 << 20);
        assert_eq!(out.check_write().unwrap(), (1 << 20) + 1);
        out.write(Bytes::from(vec![b'a'; 1 << 20])).unwrap();
        // At the cap: the floor, so a write past it is taken and dropped.
        assert_eq!(out.check_write().unwrap(), MIN_WRITE_PERMIT);
        out.write(Bytes::from_static(b"b")).unwrap();
        let (bytes, truncated) = out.take();
        assert_eq!((bytes.len(), truncated), (1 << 20, true));
    }

    #[test]
    fn a_write_past_the_permit_traps() {
        let mut out = CappedOutput::new(10);
        assert!(matches!(
            out.write(Bytes::from_static(b"x")),
            Err(StreamError::Trap(_))
        ));
        let permit = out.check_write().unwrap();
        assert_eq!(permit, MIN_WRITE_PERMIT);
        out.write(Bytes::from(vec![b'x'; permit - 1])).unwrap();
        out.write(Bytes::from_static(b"x")).unwrap();
        // The permit is spent: the next write needs a new check-write.
        assert!(matches!(
            out.write(Bytes::from_static(b"x")),
            Err(StreamError::Trap(_))
        ));
        // A clone (a new stream resource) starts with no permit.
        assert!(matches!(
            out.clone().write(Bytes::from_static(b"x")),
            Err(StreamError::Trap(_))
        ));
    }

    #[test]
    fn limiter_allows_growth_up_to_the_cap_and_records_a_denial_past_it() {
        let mut l = MemoryLimiter::new(1024);
        assert!(l.memory_growing(0, 1024, None).unwrap());
        assert!(!l.denied());
        assert!(!l.memory_growing(1024, 1025, None).unwrap());
        assert!(l.denied());
    }
}
