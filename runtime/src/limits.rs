//! Per-function limits: how long a request may run and how much linear memory it may use.

use std::time::Duration;

use thiserror::Error;
use wasmtime::ResourceLimiter;

use crate::function::FunctionSpec;

/// Kubeless's default function timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);
/// Linear-memory cap when the manifest names none.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY_BYTES,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LimitError {
    #[error("{0}")]
    Timeout(String),
    #[error("timeout must be at least 1 second")]
    ZeroTimeout,
    #[error("memory {0:?} is not a quantity such as 64Mi, 1Gi or 1048576")]
    Quantity(String),
    #[error("memory {requested} bytes is above this host's per-instance maximum of {max} bytes")]
    MemoryTooLarge { requested: u64, max: u64 },
}

impl Limits {
    /// Reads the limits a manifest asks for; `max_memory` is what the host's engine allows.
    pub fn from_spec(spec: &FunctionSpec, max_memory: u64) -> Result<Self, LimitError> {
        let mut limits = Limits::default();
        if let Some(t) = &spec.timeout {
            let secs = t.seconds().map_err(LimitError::Timeout)?;
            if secs == 0 {
                return Err(LimitError::ZeroTimeout);
            }
            limits.timeout = Duration::from_secs(secs);
        }
        limits.memory_bytes = match spec.memory.as_deref().filter(|q| !q.trim().is_empty()) {
            Some(q) => {
                let requested = parse_quantity(q)?;
                if requested > max_memory {
                    return Err(LimitError::MemoryTooLarge {
                        requested,
                        max: max_memory,
                    });
                }
                requested
            }
            None => DEFAULT_MEMORY_BYTES.min(max_memory),
        };
        Ok(limits)
    }
}

/// Parses a Kubernetes memory quantity (`128Mi`, `1G`, `1048576`) into bytes.
pub fn parse_quantity(q: &str) -> Result<u64, LimitError> {
    let q = q.trim();
    let bad = || LimitError::Quantity(q.to_string());
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (digits, suffix) = q.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let factor: u64 = match suffix {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(factor).ok_or_else(bad)
}

/// The store's resource limiter: caps each linear memory and remembers a refused grow, so the
/// response can say that the memory limit, not the function, ended the request.
pub struct MemoryLimiter {
    max_bytes: usize,
    pub refused: Option<usize>,
}

impl MemoryLimiter {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            refused: None,
        }
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = Some(desired);
            // An error (rather than `Ok(false)`) traps the instance: guests rarely handle a failed
            // grow well, and a clear 500 beats a confusing crash later.
            wasmtime::bail!(
                "memory limit exceeded: the function needed {desired} bytes of linear memory, its limit is {} bytes",
                self.max_bytes
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|m| desired <= m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::function::Timeout;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("128Mi"), Ok(128 << 20));
        assert_eq!(parse_quantity("1G"), Ok(1_000_000_000));
        assert_eq!(parse_quantity(" 65536 "), Ok(65536));
        assert!(parse_quantity("12 MB").is_err());
        assert!(parse_quantity("Mi").is_err());
        assert!(parse_quantity("99999999999999Gi").is_err());
    }

    #[test]
    fn limits_from_spec() {
        let spec = FunctionSpec {
            timeout: Some(Timeout::Text("5".into())),
            memory: Some("1Mi".into()),
            ..Default::default()
        };
        let l = Limits::from_spec(&spec, 1 << 30).unwrap();
        assert_eq!(l.timeout, Duration::from_secs(5));
        assert_eq!(l.memory_bytes, 1 << 20);

        let spec = FunctionSpec {
            timeout: Some(Timeout::Seconds(0)),
            ..Default::default()
        };
        assert_eq!(
            Limits::from_spec(&spec, 1 << 30),
            Err(LimitError::ZeroTimeout)
        );

        let spec = FunctionSpec {
            memory: Some("2Gi".into()),
            ..Default::default()
        };
        assert!(matches!(
            Limits::from_spec(&spec, 1 << 30),
            Err(LimitError::MemoryTooLarge { .. })
        ));

        let l = Limits::from_spec(&FunctionSpec::default(), 64 << 20).unwrap();
        assert_eq!(
            l,
            Limits {
                timeout: DEFAULT_TIMEOUT,
                memory_bytes: 64 << 20
            }
        );
    }
}
