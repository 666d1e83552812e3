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
}

/// A set of limits as numbers on the wire (`GET /runtimes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LimitValues {
    pub timeout_ms: u64,
    pub fuel: u64,
    pub memory_bytes: u64,
    pub output_bytes: u64,
}

impl From<Limits> for LimitValues {
    fn from(l: Limits) -> Self {
        LimitValues {
            timeout_ms: millis(l.timeout),
            fuel: l.fuel,
            memory_bytes: l.memory_bytes,
            output_bytes: l.output_bytes,
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
        };
        assert_eq!(policy().resolve(&at_max), policy().max);
        let under = LimitRequest {
            timeout_ms: nz(4999),
            fuel: nz(999),
            memory_bytes: nz((1 << 24) - 1),
            output_bytes: nz(99),
        };
        assert_eq!(policy().resolve(&under), l(4999, 999, (1 << 24) - 1, 99));
        let over = LimitRequest {
            timeout_ms: nz(5001),
            fuel: nz(1001),
            memory_bytes: nz(u64::MAX),
            output_bytes: nz(101),
        };
        assert_eq!(policy().resolve(&over), policy().max);
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
