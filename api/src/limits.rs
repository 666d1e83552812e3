//! The per-run budgets: what a client may ask for ([`LimitRequest`]), what a
//! server allows ([`LimitPolicy`]: defaults and maxima), and what one run gets
//! after resolving the first against the second ([`Limits`]).
//!
//! This is policy only; how a budget is enforced inside wasmtime lives in the
//! executor's `sandbox::limits`.

use std::num::NonZeroU64;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Limits as a client asks for them, each optional; a value above the
/// server's maximum is clamped to it (see `GET /runtimes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct LimitRequest {
    /// Wall-clock limit of the whole run, in milliseconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "positive"
    )]
    #[schema(value_type = Option<u64>, format = "uint64", minimum = 1, maximum = 18446744073709551615_u64)]
    pub timeout_ms: Option<NonZeroU64>,
    /// CPU budget in wasmtime fuel units (about 5·10⁹ per CPU-second).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "positive"
    )]
    #[schema(value_type = Option<u64>, format = "uint64", minimum = 1, maximum = 18446744073709551615_u64)]
    pub fuel: Option<NonZeroU64>,
    /// Cap on the guest's memory, in bytes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "positive"
    )]
    #[schema(value_type = Option<u64>, format = "uint64", minimum = 1, maximum = 18446744073709551615_u64)]
    pub memory_bytes: Option<NonZeroU64>,
    /// Cap on each of stdout and stderr, in bytes; the rest is dropped.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "positive"
    )]
    #[schema(value_type = Option<u64>, format = "uint64", minimum = 1, maximum = 18446744073709551615_u64)]
    pub output_bytes: Option<NonZeroU64>,
    /// Bytes the run's files may hold in all (contents and names), input files included; past it, writes fail with `ENOSPC`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "positive"
    )]
    #[schema(value_type = Option<u64>, format = "uint64", minimum = 1, maximum = 18446744073709551615_u64)]
    pub files_bytes: Option<NonZeroU64>,
    /// Files and directories the run may have at once, input files included; past it, creating one fails with `ENOSPC`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "positive"
    )]
    #[schema(value_type = Option<u64>, format = "uint64", minimum = 1, maximum = 18446744073709551615_u64)]
    pub files_count: Option<NonZeroU64>,
    /// Size of any one file, sparse or not; past it, a write or truncate fails with `EFBIG`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "positive"
    )]
    #[schema(value_type = Option<u64>, format = "uint64", minimum = 1, maximum = 18446744073709551615_u64)]
    pub file_bytes: Option<NonZeroU64>,
    /// Files and directories the run may hold open at once; past it, `open` fails with `EDQUOT` (WASI 0.2 has no `EMFILE`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "positive"
    )]
    #[schema(value_type = Option<u64>, format = "uint64", minimum = 1, maximum = 18446744073709551615_u64)]
    pub open_files: Option<NonZeroU64>,
    /// Longest path, in bytes, from the root; past it, `ENAMETOOLONG`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "positive"
    )]
    #[schema(value_type = Option<u64>, format = "uint64", minimum = 1, maximum = 18446744073709551615_u64)]
    pub path_bytes: Option<NonZeroU64>,
    /// Deepest directory nesting below `/`; past it, `mkdir` and `open` fail with `ENAMETOOLONG`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "positive"
    )]
    #[schema(value_type = Option<u64>, format = "uint64", minimum = 1, maximum = 18446744073709551615_u64)]
    pub path_depth: Option<NonZeroU64>,
    /// Bytes of file contents the response returns; files past it are listed without content and `truncated.files` is set.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "positive"
    )]
    #[schema(value_type = Option<u64>, format = "uint64", minimum = 1, maximum = 18446744073709551615_u64)]
    pub output_files_bytes: Option<NonZeroU64>,
}

object_only!(LimitRequest, "a JSON object (the limits)");

/// A limit on the wire: `null`, or a positive integer. JSON Schema (and so
/// the OpenAPI 3.1 document) counts `5.0` as the integer 5, so a whole
/// number written as a float is accepted too; `0`, negatives, fractions and
/// anything above `u64::MAX` are not.
fn positive<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<NonZeroU64>, D::Error> {
    struct Positive;

    impl<'de> serde::de::Visitor<'de> for Positive {
        type Value = Option<NonZeroU64>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a positive integer or null")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
            de.deserialize_any(self)
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            NonZeroU64::new(v)
                .map(Some)
                .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
            }
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            // 2^64 is the first float above u64::MAX.
            const TWO_TO_64: f64 = 18_446_744_073_709_551_616.0;
            if v.fract() == 0.0 && (1.0..TWO_TO_64).contains(&v) {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                return self.visit_u64(v as u64);
            }
            Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
        }
    }

    de.deserialize_option(Positive)
}

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
    /// The run's filesystem quotas.
    pub files: FileLimits,
}

/// Quotas of a run's in-memory filesystem (see [`LimitRequest`] for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    pub bytes: u64,
    pub count: u64,
    pub file_bytes: u64,
    pub open: u64,
    pub path_bytes: u64,
    pub depth: u64,
    pub output_bytes: u64,
}

impl Default for FileLimits {
    fn default() -> Self {
        FileLimits::DEFAULT
    }
}

impl FileLimits {
    /// The executor's defaults (`EXECUTOR_DEFAULT_*` of each).
    pub const DEFAULT: FileLimits = FileLimits {
        bytes: 16 << 20,
        count: 1024,
        file_bytes: 16 << 20,
        open: 128,
        path_bytes: 1024,
        depth: 32,
        output_bytes: 1 << 20,
    };

    /// The executor's maxima (`EXECUTOR_MAX_*` of each).
    /// Stored files are host memory the guest's memory limit does not
    /// count: the executor's pod is sized for `concurrency × bytes` more.
    pub const MAX: FileLimits = FileLimits {
        bytes: 64 << 20,
        count: 100_000,
        file_bytes: 64 << 20,
        open: 1024,
        path_bytes: 4096,
        depth: 128,
        output_bytes: 16 << 20,
    };
}

/// A set of limits as numbers on the wire (`GET /runtimes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LimitValues {
    pub timeout_ms: u64,
    pub fuel: u64,
    pub memory_bytes: u64,
    pub output_bytes: u64,
    pub files_bytes: u64,
    pub files_count: u64,
    pub file_bytes: u64,
    pub open_files: u64,
    pub path_bytes: u64,
    pub path_depth: u64,
    pub output_files_bytes: u64,
}

impl From<Limits> for LimitValues {
    fn from(l: Limits) -> Self {
        LimitValues {
            timeout_ms: millis(l.timeout),
            fuel: l.fuel,
            memory_bytes: l.memory_bytes,
            output_bytes: l.output_bytes,
            files_bytes: l.files.bytes,
            files_count: l.files.count,
            file_bytes: l.files.file_bytes,
            open_files: l.files.open,
            path_bytes: l.files.path_bytes,
            path_depth: l.files.depth,
            output_files_bytes: l.files.output_bytes,
        }
    }
}

/// Server-side defaults and maxima for [`Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitPolicy {
    pub default: Limits,
    pub max: Limits,
}

impl LimitPolicy {
    /// Fills in defaults and clamps each requested value to the maximum.
    pub fn resolve(&self, req: &LimitRequest) -> Limits {
        fn pick(asked: Option<NonZeroU64>, default: u64, max: u64) -> u64 {
            asked.map_or(default, NonZeroU64::get).min(max)
        }
        let (d, m) = (&self.default, &self.max);
        Limits {
            timeout: Duration::from_millis(pick(req.timeout_ms, millis(d.timeout), millis(m.timeout))),
            fuel: pick(req.fuel, d.fuel, m.fuel),
            memory_bytes: pick(req.memory_bytes, d.memory_bytes, m.memory_bytes),
            output_bytes: pick(req.output_bytes, d.output_bytes, m.output_bytes),
            files: FileLimits {
                bytes: pick(req.files_bytes, d.files.bytes, m.files.bytes),
                count: pick(req.files_count, d.files.count, m.files.count),
                file_bytes: pick(req.file_bytes, d.files.file_bytes, m.files.file_bytes),
                open: pick(req.open_files, d.files.open, m.files.open),
                path_bytes: pick(req.path_bytes, d.files.path_bytes, m.files.path_bytes),
                depth: pick(req.path_depth, d.files.depth, m.files.depth),
                output_bytes: pick(req.output_files_bytes, d.files.output_bytes, m.files.output_bytes),
            },
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(t: u64, f: u64, m: u64, o: u64) -> Limits {
        Limits {
            timeout: Duration::from_millis(t),
            fuel: f,
            memory_bytes: m,
            output_bytes: o,
            files: FileLimits::default(),
        }
    }

    fn policy() -> LimitPolicy {
        LimitPolicy {
            default: l(1000, 100, 1 << 20, 10),
            max: l(5000, 1000, 1 << 24, 100),
        }
    }

    fn nz(n: u64) -> Option<NonZeroU64> {
        NonZeroU64::new(n)
    }

    #[test]
    fn defaults_fill_missing_fields() {
        assert_eq!(policy().resolve(&LimitRequest::default()), policy().default);
    }

    #[test]
    fn requests_are_kept_up_to_the_maximum_and_clamped_past_it() {
        let at_max = LimitRequest {
            timeout_ms: nz(5000),
            fuel: nz(1000),
            memory_bytes: nz(1 << 24),
            output_bytes: nz(100),
            ..LimitRequest::default()
        };
        assert_eq!(policy().resolve(&at_max), policy().max);
        let under = LimitRequest {
            timeout_ms: nz(4999),
            fuel: nz(999),
            memory_bytes: nz((1 << 24) - 1),
            output_bytes: nz(99),
            ..LimitRequest::default()
        };
        assert_eq!(policy().resolve(&under), l(4999, 999, (1 << 24) - 1, 99));
        let over = LimitRequest {
            timeout_ms: nz(5001),
            fuel: nz(1001),
            memory_bytes: nz(u64::MAX),
            output_bytes: nz(101),
            ..LimitRequest::default()
        };
        assert_eq!(policy().resolve(&over), policy().max);
    }

    #[test]
    fn file_quotas_are_defaulted_kept_and_clamped_like_the_others() {
        let p = LimitPolicy {
            default: Limits {
                files: FileLimits::default(),
                ..policy().default
            },
            max: Limits {
                files: FileLimits::MAX,
                ..policy().max
            },
        };
        assert_eq!(p.resolve(&LimitRequest::default()).files, FileLimits::default());
        let max = FileLimits::MAX;
        let under = LimitRequest {
            files_count: nz(max.count - 1),
            output_files_bytes: nz(5),
            ..LimitRequest::default()
        };
        let got = p.resolve(&under).files;
        assert_eq!(
            (got.count, got.output_bytes, got.bytes),
            (max.count - 1, 5, FileLimits::default().bytes)
        );
        let over = LimitRequest {
            files_bytes: nz(u64::MAX),
            files_count: nz(max.count + 1),
            file_bytes: nz(u64::MAX),
            open_files: nz(max.open + 1),
            path_bytes: nz(max.path_bytes + 1),
            path_depth: nz(max.depth + 1),
            output_files_bytes: nz(u64::MAX),
            ..LimitRequest::default()
        };
        assert_eq!(p.resolve(&over).files, max);
    }

    #[test]
    fn zero_negative_fractional_and_unknown_limits_do_not_parse() {
        for bad in [
            r#"{"fuel": 0}"#,
            r#"{"fuel": -1}"#,
            r#"{"fuel": 1.5}"#,
            r#"{"fuel": "9"}"#,
            r#"{"cpu": 1}"#,
            r#"{"fuel": 18446744073709551616}"#,
        ] {
            assert!(serde_json::from_str::<LimitRequest>(bad).is_err(), "{bad}");
        }
        let ok: LimitRequest = serde_json::from_str(r#"{"fuel": 1, "timeout_ms": null}"#).unwrap();
        assert_eq!((ok.fuel, ok.timeout_ms), (nz(1), None));
        let max: LimitRequest = serde_json::from_str(r#"{"fuel": 18446744073709551615}"#).unwrap();
        assert_eq!(max.fuel, nz(u64::MAX));
        for bad in [
            r#"{"fuel": 0.0}"#,
            r#"{"fuel": 0.5}"#,
            r#"{"fuel": 1.8446744073709552e19}"#,
            r#"{"fuel": -1.0}"#,
        ] {
            assert!(serde_json::from_str::<LimitRequest>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn whole_floats_are_integers_as_json_schema_says() {
        let r: LimitRequest = serde_json::from_str(r#"{"fuel": 5.0, "timeout_ms": 1e3}"#).unwrap();
        assert_eq!((r.fuel, r.timeout_ms), (nz(5), nz(1000)));
    }
}
