//! Kubernetes resource quantities (`250m`, `2`, `1664Mi`, `1e3`, `1.5G`) as numbers.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a Kubernetes quantity")]
pub struct BadQuantity(pub String);

/// The quantity's value in base units (cores, bytes), as a float: the
/// quantities this agent reads (limits, capacities) fit well inside an f64.
pub fn parse(q: &str) -> Result<f64, BadQuantity> {
    let bad = || BadQuantity(q.to_owned());
    let s = q.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| bad())?;
            10f64.powi(exp)
        }
        _ => return Err(bad()),
    };
    let value = number * factor;
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(bad())
    }
}

/// Bytes, rounded up (Kubernetes rounds memory up to whole bytes).
pub fn bytes(q: &str) -> Result<u64, BadQuantity> {
    Ok(parse(q)?.ceil() as u64)
}

/// Millicores, rounded up (Kubernetes' smallest CPU unit is 1m).
pub fn millicores(q: &str) -> Result<u64, BadQuantity> {
    Ok((parse(q)? * 1000.0 - 1e-9).ceil().max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_cpu_forms() {
        assert_eq!(bytes("1664Mi"), Ok(1664 * 1024 * 1024));
        assert_eq!(bytes("512Mi"), Ok(536_870_912));
        assert_eq!(bytes("1G"), Ok(1_000_000_000));
        assert_eq!(bytes("1e3"), Ok(1000));
        assert_eq!(bytes("128974848"), Ok(128_974_848));
        assert_eq!(bytes("1.5Gi"), Ok(1_610_612_736));
        assert_eq!(millicores("250m"), Ok(250));
        assert_eq!(millicores("2"), Ok(2000));
        assert_eq!(millicores("0.5"), Ok(500));
        assert_eq!(millicores("100u"), Ok(1), "rounded up to 1m");
        for bad in ["", "Mi", "12XB", "-1", "1e", "abc"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
