//! The pooling instance allocator: every run's memories, tables and fiber
//! stack come from slots reserved once at start, and a slot is reset (not
//! unmapped) when a run ends; the guest's copy-on-write memory image stays
//! mapped in a warm slot. A semaphore with one permit per slot makes a run
//! wait for a slot instead of failing when all are taken.

use wasmtime::{Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::limits::{MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES};

/// How big the pool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Instances (runs) alive at once: the executor's concurrency plus one
    /// for the introspection/warm-up instance at load.
    pub slots: u32,
    /// The largest linear memory a run may have (`EXECUTOR_MAX_MEMORY_BYTES`);
    /// each run's own `memory_bytes` is enforced below it by the store's
    /// limiter.
    pub max_memory_bytes: u64,
    /// Bytes at the start of each freed linear memory reset by `memset`
    /// (staying resident) rather than given back with `madvise`
    /// ([`LINEAR_MEMORY_KEEP_RESIDENT`] unless a benchmark compares others).
    pub keep_resident: usize,
}

/// Bytes of each linear memory reset with `memset` (or copied back from the
/// image) when its slot is freed, instead of `madvise`d away. Measured
/// (`docs/benchmarks.md`, "Pooling allocator", two runs): 0 was the fastest
/// for `print('hi')` (0.96–0.97× of mapping on demand), 1 MiB 1.00–1.02×,
/// 4 MiB 1.11–1.15×, 16 MiB 1.34–1.38×: a hello's dirty pages are spread
/// over the 20 MiB snapshot, so `memset`-ing a prefix costs more than the
/// faults it saves. Every page is given back to the kernel.
pub const LINEAR_MEMORY_KEEP_RESIDENT: usize = 0;
/// The same for tables (CPython's guest has a few thousand entries).
pub const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// Largest instance state (a core instance's `VMContext`, and a component's
/// summed over its core instances) a slot holds. Wasmtime's default, 1 MiB,
/// is too small for the `python-scientific` interpreter, whose 47 000
/// functions need 1.5 MB of function references.
pub const MAX_INSTANCE_BYTES: usize = 4 << 20;

/// Largest memory a 32-bit guest can address.
const WASM32_MAX_MEMORY: u64 = 4 << 30;
const WASM_PAGE: u64 = 64 << 10;

impl PoolOptions {
    /// A pool for `concurrency` runs at once plus the load's introspection
    /// instance, each memory up to `max_memory_bytes`.
    pub fn for_concurrency(concurrency: usize, max_memory_bytes: u64) -> PoolOptions {
        let slots = u32::try_from(concurrency.saturating_add(1)).unwrap_or(u32::MAX);
        PoolOptions {
            slots,
            max_memory_bytes,
            keep_resident: LINEAR_MEMORY_KEEP_RESIDENT,
        }
    }

    /// The memory cap of a slot: `max_memory_bytes` rounded up to a wasm
    /// page, at most 4 GiB (a wasm32 memory cannot be larger, and the
    /// engine's default reservation is 4 GiB).
    pub fn slot_memory_bytes(&self) -> usize {
        let bytes = self.max_memory_bytes.clamp(WASM_PAGE, WASM32_MAX_MEMORY);
        usize::try_from(bytes.div_ceil(WASM_PAGE) * WASM_PAGE).unwrap_or(usize::MAX)
    }

    /// The load error for a guest that does not fit a slot of this pool.
    pub(super) fn too_small(&self, cause: String) -> super::SandboxError {
        super::SandboxError::Load(format!(
            "the guest does not fit a pool slot ({} MiB of memory, EXECUTOR_MAX_MEMORY_BYTES; \
             EXECUTOR_POOLING=false runs without the pool): {cause}",
            self.slot_memory_bytes() >> 20
        ))
    }

    /// The allocation strategy for the engine.
    pub(super) fn strategy(&self) -> InstanceAllocationStrategy {
        let slots = self.slots.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(MAX_CORE_INSTANCES))
            .max_core_instances_per_component(MAX_CORE_INSTANCES)
            .max_core_instance_size(MAX_INSTANCE_BYTES)
            .max_component_instance_size(MAX_INSTANCE_BYTES)
            .total_memories(slots.saturating_mul(MAX_MEMORIES))
            .max_memories_per_component(MAX_MEMORIES)
            .total_tables(slots.saturating_mul(MAX_TABLES))
            .max_tables_per_component(MAX_TABLES)
            .max_tables_per_module(MAX_TABLES)
            .table_elements(MAX_TABLE_ELEMENTS)
            .max_memory_size(self.slot_memory_bytes())
            // One fiber stack per run, reused.
            .total_stacks(slots)
            // Slots cycle through the ones last used: the set of warm
            // slots (and their resident pages) is the peak concurrency.
            .max_unused_warm_slots(0)
            .linear_memory_keep_resident(self.keep_resident)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            // Never scan the page map to skip resetting pages it reports
            // clean: a swapped-out dirty page could then keep one run's data
            // for the next. Every slot is reset whole (memset the kept
            // bytes, madvise the rest).
            .pagemap_scan(Enabled::No);
        InstanceAllocationStrategy::Pooling(pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Instance, Module, Store};

    /// `(module (memory (export "mem") 1) (data (i32.const 0) "SEED"))`.
    const SEEDED: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x05, 0x03, 0x01, 0x00, 0x01, // memory: one, min 1 page, no max
        0x07, 0x07, 0x01, 0x03, b'm', b'e', b'm', 0x02, 0x00, // export "mem"
        0x0b, 0x0a, 0x01, 0x00, 0x41, 0x00, 0x0b, 0x04, b'S', b'E', b'E', b'D', // data
    ];

    /// A slot's memory, reused: the first instance grows it to `pages` and
    /// dirties every byte (over its image too); the next, in the same slot
    /// (the pool has one), must see the image and zeros, in the part reset
    /// by `memset` (kept resident) and in the part given back to the kernel.
    #[tokio::test]
    async fn a_reused_slot_is_the_image_and_zeros_to_the_byte() {
        // 1 MiB reset by `memset`, the rest by `madvise`: both paths.
        let pool = PoolOptions {
            slots: 1,
            keep_resident: 1 << 20,
            ..PoolOptions::for_concurrency(0, 8 << 20)
        };
        let engine = crate::sandbox::engine(false, Some(&pool)).unwrap();
        let module = Module::new(&engine, SEEDED).unwrap();
        let pages = u64::try_from(pool.slot_memory_bytes()).unwrap() / WASM_PAGE - 1;
        assert!(pages * WASM_PAGE > pool.keep_resident as u64 * 4);
        for round in 0..3 {
            let mut store = Store::new(&engine, ());
            let instance = Instance::new_async(&mut store, &module, &[]).await.unwrap();
            let memory = instance.get_memory(&mut store, "mem").unwrap();
            let data = memory.data(&store);
            assert_eq!(&data[..4], b"SEED", "round {round}");
            assert!(
                data[4..].iter().all(|&b| b == 0),
                "round {round}: page 0 was not reset"
            );
            memory.grow(&mut store, pages).unwrap();
            let data = memory.data_mut(&mut store);
            let stale = data[4..].iter().position(|&b| b != 0).map(|i| i + 4);
            assert_eq!(
                stale, None,
                "round {round}: a grown page held the last run's bytes"
            );
            data.fill(0xA5);
            // Dropping the store frees the slot for the next round.
        }
    }

    #[test]
    fn slots_cover_the_concurrency_and_the_introspection_instance() {
        assert_eq!(PoolOptions::for_concurrency(2, 512 << 20).slots, 3);
        assert_eq!(PoolOptions::for_concurrency(usize::MAX, 1).slots, u32::MAX);
    }

    #[test]
    fn slot_memory_is_page_rounded_and_capped_at_4_gib() {
        let p = |bytes| PoolOptions::for_concurrency(1, bytes).slot_memory_bytes();
        assert_eq!(p(512 << 20), 512 << 20);
        assert_eq!(p((512 << 20) + 1), (512 << 20) + (64 << 10));
        assert_eq!(p(0), 64 << 10);
        assert_eq!(p(u64::MAX), 4 << 30);
    }
}
