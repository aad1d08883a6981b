//! What a Function gets when it asks for nothing, and how it writes a memory size. The hosts
//! turn these into per-instance limits; the validator checks a Function against them.

use std::time::Duration;

use thiserror::Error;

/// Kubeless's default function timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// Linear-memory cap when the manifest names none.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;

/// The largest linear memory a Function may ask for, and a host's per-instance maximum unless
/// its `--max-memory` says otherwise.
pub const MAX_MEMORY_BYTES: u64 = 1 << 30;

/// Idle instances kept for python, nodejs, go and ruby when the manifest names no number:
/// their instances take milliseconds to start (an interpreter, Go's runtime), a warm one
/// nothing.
pub const DEFAULT_WARM_INSTANCES: usize = 4;

/// A memory size that is not a Kubernetes quantity.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{0:?} is not a quantity such as 64Mi, 1Gi or 1048576")]
pub struct BadQuantity(pub String);

/// Parses a Kubernetes memory quantity (`128Mi`, `1G`, `1048576`) into bytes.
pub fn parse_quantity(q: &str) -> Result<u64, BadQuantity> {
    let q = q.trim();
    let bad = || BadQuantity(q.to_string());
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (digits, suffix) = q.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let factor: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(factor).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("128Mi"), Ok(128 << 20));
        assert_eq!(parse_quantity("1G"), Ok(1_000_000_000));
        assert_eq!(parse_quantity(" 65536 "), Ok(65536));
        assert!(parse_quantity("12 MB").is_err());
        assert!(parse_quantity("Mi").is_err());
        assert!(parse_quantity("99999999999999Gi").is_err());
        assert!(parse_quantity("1K").is_err(), "Kubernetes spells it k");
    }
}
